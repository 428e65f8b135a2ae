package run

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
)

// IDMaxLength is the longest run id ID returns.
const IDMaxLength = idPrefixLength + 1 + idHashLength

const (
	idPrefixLength = 20
	idHashLength   = 16
)

// ID derives a run's identity from the requestId, or, when there is none,
// from the event's source and id. The CloudEvents spec makes those unique per
// event, so a redelivered event gets the same run. The result is a readable prefix of the id followed by a hash of
// the whole identity: lowercase alphanumerics and dashes, starting and ending
// with an alphanumeric, at most IDMaxLength characters. It is therefore a
// valid DNS-1123 label and label value, whatever the input.
func ID(requestID, source, eventID string) string {
	var key, readable string
	if requestID != "" {
		key = "request\x00" + requestID
		readable = requestID
	} else {
		key = "event\x00" + source + "\x00" + eventID
		readable = eventID
	}
	sum := sha256.Sum256([]byte(key))
	hash := hex.EncodeToString(sum[:])[:idHashLength]

	prefix := sanitize(readable, idPrefixLength)
	if prefix == "" {
		return hash
	}
	return prefix + "-" + hash
}

// sanitize keeps ASCII letters and digits of s, lowercased, turns every other
// run of characters into one dash, and trims dashes from both ends. The
// result has at most max characters.
func sanitize(s string, max int) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			if dash && b.Len() > 0 {
				if b.Len()+2 > max {
					break
				}
				b.WriteByte('-')
			}
			if b.Len() >= max {
				break
			}
			dash = false
			b.WriteRune(r)
			continue
		}
		dash = true
	}
	return b.String()
}

func itoa(i int) string { return strconv.Itoa(i) }
