package run

import (
	"encoding/base64"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// ReadCapped reads r to its end or to max bytes, whichever comes first. It
// reports truncated when r had more than max bytes; it reads at most one
// byte past max to find out.
func ReadCapped(r io.Reader, max int) (data []byte, truncated bool, err error) {
	data, err = io.ReadAll(io.LimitReader(r, int64(max)+1))
	if len(data) > max {
		return data[:max], true, err
	}
	return data, false, err
}

// SetOutput stores raw output in the result. Output that is valid UTF-8 goes
// into Output as it is. Otherwise Output gets the text with each run of
// invalid bytes replaced by one U+FFFD, and OutputBase64 the exact bytes. A
// multi-byte character cut by truncation is dropped rather than reported as
// invalid.
func (r *Result) SetOutput(raw []byte, truncated bool) {
	if truncated {
		raw = trimPartialRune(raw)
	}
	r.OutputTruncated = truncated
	if utf8.Valid(raw) {
		r.Output = string(raw)
		r.OutputBase64 = ""
		return
	}
	r.Output = strings.ToValidUTF8(string(raw), "\uFFFD")
	r.OutputBase64 = base64.StdEncoding.EncodeToString(raw)
}

// trimPartialRune removes an incomplete UTF-8 sequence from the end of b.
func trimPartialRune(b []byte) []byte {
	for i := 1; i <= utf8.UTFMax-1 && i <= len(b); i++ {
		c := b[len(b)-i]
		if c < utf8.RuneSelf {
			return b // ASCII: nothing partial.
		}
		if utf8.RuneStart(c) {
			if !utf8.FullRune(b[len(b)-i:]) {
				return b[:len(b)-i]
			}
			return b
		}
	}
	return b
}

// SetTimes stores the run's start and end, in UTC, and its duration.
func (r *Result) SetTimes(started, finished time.Time) {
	if started.IsZero() || finished.IsZero() {
		return
	}
	started, finished = started.UTC(), finished.UTC()
	ms := finished.Sub(started).Milliseconds()
	r.StartedAt, r.FinishedAt, r.DurationMs = &started, &finished, &ms
}

// IntPtr returns a pointer to i, for the optional integer fields.
func IntPtr(i int) *int { return &i }
