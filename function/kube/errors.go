package kube

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/scriptrun/scriptrun/function/run"
)

// classify sorts an API error into one of run's error classes, wrapping it
// with what was being done. It is the one place that decides between
// "retry later" and "operator, fix this".
func classify(err error, format string, args ...any) error {
	action := fmt.Sprintf(format, args...)
	return fmt.Errorf("%w: %s: %w", class(err), action, err)
}

func class(err error) error {
	switch {
	case apierrors.IsTooManyRequests(err), isQuotaExceeded(err), isClientThrottled(err):
		return run.ErrThrottled
	case apierrors.IsTimeout(err), apierrors.IsServerTimeout(err), apierrors.IsServiceUnavailable(err),
		apierrors.IsConflict(err),
		apierrors.IsInternalError(err), apierrors.IsUnexpectedServerError(err),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled), isNetworkError(err):
		return run.ErrUnavailable
	default:
		// Forbidden, Unauthorized, Invalid and anything unknown: retrying
		// alone will not help, but an operator's fix will.
		return run.ErrInternal
	}
}

// isQuotaExceeded reports a ResourceQuota rejection. The API server returns
// it as Forbidden with one of these messages, with no dedicated reason.
// "status unknown for quota" means the quota controller has not yet counted
// usage for a new quota, which passes by itself.
func isQuotaExceeded(err error) bool {
	if !apierrors.IsForbidden(err) {
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, "exceeded quota") || strings.Contains(msg, "status unknown for quota")
}

// isClientThrottled reports client-go's rate limiter giving up because the
// wait would pass the context's deadline.
func isClientThrottled(err error) bool {
	return err != nil && strings.Contains(err.Error(), "client rate limiter Wait returned an error")
}

func isNetworkError(err error) bool {
	var netErr net.Error
	return errors.As(err, &netErr)
}
