package run

import (
	"errors"
	"fmt"
	"net/http"
)

// The classes of runner errors. Runners wrap the underlying error in one of
// these, so that the receiver picks the HTTP status in one place.
var (
	// ErrUnavailable means a dependency such as the API server could not be
	// reached or timed out. The sender should retry.
	ErrUnavailable = errors.New("temporarily unavailable")
	// ErrThrottled means a quota, rate limit or in-flight cap was hit. The
	// sender should retry later.
	ErrThrottled = errors.New("throttled")
	// ErrShuttingDown means the receiver stopped before the run finished.
	// The sender should deliver the event again.
	ErrShuttingDown = errors.New("receiver is shutting down")
	// ErrInternal means scriptrun is misconfigured or broken, for example
	// when the API server forbids a call. Retrying may help once an
	// operator fixes it.
	ErrInternal = errors.New("internal error")
)

// HTTPStatus maps a runner error to the HTTP status the receiver returns.
// Every status it returns makes a Knative broker retry.
func HTTPStatus(err error) int {
	switch {
	case errors.Is(err, ErrThrottled):
		return http.StatusTooManyRequests
	case errors.Is(err, ErrUnavailable), errors.Is(err, ErrShuttingDown):
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// RejectedError is an invalid request. It becomes a reply with status
// rejected, never an HTTP error, so the sender learns what to fix.
type RejectedError struct {
	// Field is the JSON name of the invalid field, if one is to blame.
	Field string
	// Reason is the problem and its fix, as a sentence for the sender.
	Reason string
}

func (e *RejectedError) Error() string {
	if e.Field == "" {
		return e.Reason
	}
	return fmt.Sprintf("%s: %s", e.Field, e.Reason)
}

func reject(field, format string, args ...any) *RejectedError {
	return &RejectedError{Field: field, Reason: fmt.Sprintf(format, args...)}
}
