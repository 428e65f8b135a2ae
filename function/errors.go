package function

import (
	"errors"
	"net/http"

	"github.com/scriptrun/scriptrun/function/run"
)

// BadEventError is an event that the receiver does not handle, such as one of
// another type. It maps to HTTP 400, which a broker does not retry.
type BadEventError struct{ Reason string }

func (e *BadEventError) Error() string { return e.Reason }

// HTTPStatus returns the HTTP status for an error from Handle: 400 for a bad
// event, and for the rest the retryable status of its run error class.
func HTTPStatus(err error) int {
	var bad *BadEventError
	if errors.As(err, &bad) {
		return http.StatusBadRequest
	}
	return run.HTTPStatus(err)
}
