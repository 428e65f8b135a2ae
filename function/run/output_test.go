package run

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestReadCapped(t *testing.T) {
	tests := []struct {
		name          string
		input         string
		max           int
		want          string
		wantTruncated bool
	}{
		{"shorter than cap", "abc", 5, "abc", false},
		{"exactly the cap", "abcde", 5, "abcde", false},
		{"one byte over", "abcdef", 5, "abcde", true},
		{"far over", strings.Repeat("x", 10000), 3, "xxx", true},
		{"empty", "", 3, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, truncated, err := ReadCapped(strings.NewReader(tt.input), tt.max)
			require.NoError(t, err)
			assert.Equal(t, tt.want, string(got))
			assert.Equal(t, tt.wantTruncated, truncated)
		})
	}
}

func TestSetOutput(t *testing.T) {
	tests := []struct {
		name       string
		raw        []byte
		truncated  bool
		wantOutput string
		wantBase64 bool
	}{
		{"ASCII", []byte("ok\n"), false, "ok\n", false},
		{"valid UTF-8", []byte("grüße 🙂"), false, "grüße 🙂", false},
		{"invalid byte", []byte("a\xffb"), false, "a\uFFFDb", true},
		{"rune cut by truncation", []byte("ab\xf0\x9f\x99"), true, "ab", false},
		{"invalid byte and truncation", []byte("\xff\xf0\x9f"), true, "\uFFFD", true},
		{"NUL bytes are valid", []byte("a\x00b"), false, "a\x00b", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r Result
			r.SetOutput(tt.raw, tt.truncated)

			assert.Equal(t, tt.wantOutput, r.Output)
			assert.Equal(t, tt.truncated, r.OutputTruncated)
			if !tt.wantBase64 {
				assert.Empty(t, r.OutputBase64)
				return
			}
			decoded, err := base64.StdEncoding.DecodeString(r.OutputBase64)
			require.NoError(t, err)
			assert.NotEmpty(t, decoded)
			assert.True(t, strings.HasPrefix(string(tt.raw), string(decoded)), "base64 holds the raw bytes")
		})
	}
}

func TestSetTimes(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("X", 3600))
	var r Result
	r.SetTimes(start, start.Add(1500*time.Millisecond))

	require.NotNil(t, r.DurationMs)
	assert.Equal(t, int64(1500), *r.DurationMs)
	assert.Equal(t, time.UTC, r.StartedAt.Location())

	var empty Result
	empty.SetTimes(time.Time{}, start)
	assert.Nil(t, empty.StartedAt, "no times without a start")
}

func TestHTTPStatus(t *testing.T) {
	assert.Equal(t, 429, HTTPStatus(ErrThrottled))
	assert.Equal(t, 503, HTTPStatus(ErrUnavailable))
	assert.Equal(t, 503, HTTPStatus(ErrShuttingDown))
	assert.Equal(t, 500, HTTPStatus(ErrInternal))
}
