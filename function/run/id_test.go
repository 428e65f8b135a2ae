package run

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"k8s.io/apimachinery/pkg/util/validation"
)

func TestIDIsValidLabel(t *testing.T) {
	tests := []struct {
		name      string
		requestID string
		source    string
		eventID   string
	}{
		{"plain request id", "submission-42", "", ""},
		{"upper case and dots", "Course.CS101/Lab3", "", ""},
		{"only symbols", "!!!---___", "", ""},
		{"unicode", "提出-äöü-🙂", "", ""},
		{"256 characters", strings.Repeat("ab", 128), "", ""},
		{"leading and trailing dashes", "--x--", "", ""},
		{"event id only", "", "https://github.com/org/repo", "A234-1234-1234"},
		{"empty event id", "", "", ""},
		{"placeholder text", "{{JOB_NAME}}", "", ""},
		{"dash at the prefix limit", "aaaaaaaaaaaaaaaaaaa-bbbbbb", "", ""},
		{"dash just past the prefix limit", "aaaaaaaaaaaaaaaaaaaa-bbbbbb", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := ID(tt.requestID, tt.source, tt.eventID)

			assert.LessOrEqual(t, len(id), IDMaxLength)
			assert.Empty(t, validation.IsDNS1123Label(id), "id %q", id)
			assert.Empty(t, validation.IsValidLabelValue(id), "id %q", id)
			assert.Equal(t, id, ID(tt.requestID, tt.source, tt.eventID), "stable")
		})
	}
}

func TestIDDistinguishesInputs(t *testing.T) {
	assert.NotEqual(t, ID("abc", "", ""), ID("ABC", "", ""), "ids that sanitize alike still differ by hash")
	assert.NotEqual(t, ID("", "/a", "1"), ID("", "/b", "1"), "same event id from another source")
	assert.NotEqual(t, ID("", "/a", "1"), ID("1", "", ""), "a requestId and an event id never collide")
	assert.Equal(t, ID("x", "/a", "1"), ID("x", "/b", "2"), "a requestId ignores the event")
}

func TestIDReadablePrefix(t *testing.T) {
	assert.True(t, strings.HasPrefix(ID("Lab3 Alice", "", ""), "lab3-alice-"))
}
