package run

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func testValidator() Validator {
	return Validator{
		Runtimes: map[string]Runtime{
			"python": {Image: "py", Command: []string{"python3", "-u"}, FileExtension: "py"},
			"node":   {Image: "node", Command: []string{"node"}, FileExtension: "js"},
		},
		Limits: Limits{MaxScriptBytes: 100, MaxStdinBytes: 50, DefaultTimeout: 30 * time.Second, MaxTimeout: 300 * time.Second},
	}
}

func TestValidatorRejects(t *testing.T) {
	tests := []struct {
		name      string
		req       Request
		wantField string
		wantText  string
	}{
		{"missing language", Request{Script: "x"}, "language", "node, python"},
		{"unknown language", Request{Language: "ruby", Script: "x"}, "language", `unknown language "ruby": use one of node, python`},
		{"missing script", Request{Language: "python"}, "script", "missing"},
		{"script too large", Request{Language: "python", Script: strings.Repeat("x", 101)}, "script", "101 bytes is over the limit of 100 bytes"},
		{"script not UTF-8", Request{Language: "python", Script: "\xff"}, "script", "UTF-8"},
		{"request id too long", Request{Language: "python", Script: "x", RequestID: strings.Repeat("é", 257)}, "requestId", "257 characters is over the limit of 256"},
		{"request id with newline", Request{Language: "python", Script: "x", RequestID: "a\nb"}, "requestId", "U+000A"},
		{"stdin too large", Request{Language: "python", Script: "x", Stdin: strings.Repeat("x", 51)}, "stdin", "over the limit of 50 bytes"},
		{"too many args", Request{Language: "python", Script: "x", Args: make([]string, MaxArgs+1)}, "args", "65 args"},
		{"arg with NUL byte", Request{Language: "python", Script: "x", Args: []string{"ok", "a\x00b"}}, "args[1]", "NUL"},
		{"arg too long", Request{Language: "python", Script: "x", Args: []string{strings.Repeat("a", MaxArgBytes+1)}}, "args[0]", "4097 bytes"},
		{"zero timeout", Request{Language: "python", Script: "x", TimeoutSeconds: IntPtr(0)}, "timeoutSeconds", "set 1 to 300"},
		{"timeout over maximum", Request{Language: "python", Script: "x", TimeoutSeconds: IntPtr(301)}, "timeoutSeconds", "301 is out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := testValidator().Spec(tt.req, "/src", "id-1")
			var rejected *RejectedError
			require.ErrorAs(t, err, &rejected)
			assert.Equal(t, tt.wantField, rejected.Field)
			assert.Contains(t, rejected.Error(), tt.wantText)
		})
	}
}

func TestValidatorSpec(t *testing.T) {
	req := Request{Language: "python", Script: "print(1)", Stdin: "in", Args: []string{"-v"}, TimeoutSeconds: IntPtr(5)}

	spec, err := testValidator().Spec(req, "/src", "event-1")
	require.NoError(t, err)
	assert.Equal(t, 5*time.Second, spec.Timeout)
	assert.Equal(t, ID("", "/src", "event-1"), spec.ID)
	assert.Equal(t, spec.ID, spec.RequestID, "without a requestId the run id stands in")
	assert.Equal(t, []string{"python3", "-u"}, spec.Runtime.Command)
	assert.Equal(t, Digest(req), spec.Digest)

	req.TimeoutSeconds = nil
	req.RequestID = "caller-42"
	spec, err = testValidator().Spec(req, "/src", "event-2")
	require.NoError(t, err)
	assert.Equal(t, 30*time.Second, spec.Timeout, "default timeout")
	assert.Equal(t, "caller-42", spec.RequestID)
	assert.Equal(t, ID("caller-42", "/other", "event-9"), spec.ID, "a requestId alone decides the identity")
}

func TestDigestIgnoresRequestID(t *testing.T) {
	a := Request{Language: "python", Script: "x", RequestID: "a"}
	b := Request{Language: "python", Script: "x", RequestID: "b"}
	c := Request{Language: "python", Script: "y", RequestID: "a"}

	assert.Equal(t, Digest(a), Digest(b))
	assert.NotEqual(t, Digest(a), Digest(c))
}
