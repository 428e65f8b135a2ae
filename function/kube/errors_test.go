package kube

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/scriptrun/scriptrun/function/run"
)

var (
	jobsGroupResource       = schema.GroupResource{Group: "batch", Resource: "jobs"}
	configMapsGroupResource = schema.GroupResource{Resource: "configmaps"}
)

// quotaError is the Forbidden error the API server returns when a
// ResourceQuota rejects a create.
func quotaError(gr schema.GroupResource, name string) error {
	return apierrors.NewForbidden(gr, name, errors.New(
		"exceeded quota: runs-quota, requested: count/jobs.batch=1, used: count/jobs.batch=50, limited: count/jobs.batch=50"))
}

// rbacError is the Forbidden error the API server returns when RBAC denies a
// verb.
func rbacError(gr schema.GroupResource, name string) error {
	return apierrors.NewForbidden(gr, name, fmt.Errorf(
		`User "system:serviceaccount:scriptrun:receiver" cannot create resource %q in API group %q in the namespace "runs"`,
		gr.Resource, gr.Group))
}

func TestClass(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	tests := []struct {
		name string
		err  error
		want error
	}{
		{name: "too many requests", err: apierrors.NewTooManyRequests("slow down", 1), want: run.ErrThrottled},
		{name: "too many requests without retry", err: apierrors.NewTooManyRequestsError("slow down"), want: run.ErrThrottled},
		{name: "quota exceeded on jobs", err: quotaError(jobsGroupResource, "job-1"), want: run.ErrThrottled},
		{name: "quota exceeded on configmaps", err: quotaError(configMapsGroupResource, "cm-1"), want: run.ErrThrottled},
		{
			name: "client rate limiter",
			err:  fmt.Errorf("client rate limiter Wait returned an error: %w", errors.New("rate: Wait(n=1) would exceed context deadline")),
			want: run.ErrThrottled,
		},
		{
			name: "client rate limiter after the deadline",
			err:  fmt.Errorf("client rate limiter Wait returned an error: %w", context.DeadlineExceeded),
			want: run.ErrThrottled,
		},
		{name: "gateway timeout", err: apierrors.NewTimeoutError("request did not complete within 60s", 1), want: run.ErrUnavailable},
		{name: "server timeout", err: apierrors.NewServerTimeout(jobsGroupResource, "create", 1), want: run.ErrUnavailable},
		{name: "service unavailable", err: apierrors.NewServiceUnavailable("etcd leader changed"), want: run.ErrUnavailable},
		{name: "internal error", err: apierrors.NewInternalError(errors.New("etcdserver: request timed out")), want: run.ErrUnavailable},
		{
			name: "unexpected bad gateway",
			err:  apierrors.NewGenericServerResponse(502, "create", jobsGroupResource, "job-1", "<html>bad gateway</html>", 0, true),
			want: run.ErrUnavailable,
		},
		{name: "context deadline exceeded", err: context.DeadlineExceeded, want: run.ErrUnavailable},
		{name: "wrapped context deadline", err: fmt.Errorf("waiting: %w", context.DeadlineExceeded), want: run.ErrUnavailable},
		{name: "context canceled", err: context.Canceled, want: run.ErrUnavailable},
		{name: "dial refused", err: refused, want: run.ErrUnavailable},
		{name: "read reset", err: &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, want: run.ErrUnavailable},
		{name: "url error around dial", err: &url.Error{Op: "Post", URL: "https://10.96.0.1/api/v1/namespaces/runs/configmaps", Err: refused}, want: run.ErrUnavailable},
		{name: "dns error", err: &net.DNSError{Err: "no such host", Name: "kubernetes.default.svc", IsNotFound: true}, want: run.ErrUnavailable},
		{name: "rbac forbidden", err: rbacError(jobsGroupResource, "job-1"), want: run.ErrInternal},
		{name: "unauthorized", err: apierrors.NewUnauthorized("token expired"), want: run.ErrInternal},
		{
			name: "invalid",
			err: apierrors.NewInvalid(schema.GroupKind{Group: "batch", Kind: "Job"}, "job-1", field.ErrorList{
				field.Required(field.NewPath("spec", "template", "spec", "containers").Index(0).Child("image"), ""),
			}),
			want: run.ErrInternal,
		},
		{name: "bad request", err: apierrors.NewBadRequest("the body is not a Job"), want: run.ErrInternal},
		{name: "not found", err: apierrors.NewNotFound(configMapsGroupResource, "cm-1"), want: run.ErrInternal},
		{name: "already exists", err: apierrors.NewAlreadyExists(jobsGroupResource, "job-1"), want: run.ErrInternal},
		{name: "conflict", err: apierrors.NewConflict(configMapsGroupResource, "cm-1", errors.New("the object has been modified")), want: run.ErrUnavailable},
		{name: "gone", err: apierrors.NewGone("resource version too old"), want: run.ErrInternal},
		{name: "unknown error", err: errors.New("something else"), want: run.ErrInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, class(tt.err))
		})
	}
}

func TestClassifyWraps(t *testing.T) {
	inner := apierrors.NewServerTimeout(jobsGroupResource, "create", 1)

	err := classify(inner, "creating job %s/%s", "runs", "job-1")

	assert.ErrorIs(t, err, run.ErrUnavailable)
	assert.ErrorIs(t, err, inner)
	assert.NotErrorIs(t, err, run.ErrInternal)
	assert.True(t, apierrors.IsServerTimeout(err), "the API error must stay reachable through the wrap")
	assert.Equal(t, "temporarily unavailable: creating job runs/job-1: "+inner.Error(), err.Error())
}

// closedPort returns a loopback address on which nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := listener.Addr().String()
	require.NoError(t, listener.Close())
	return addr
}

// TestClassifyClientGoErrors classifies errors as client-go returns them, from
// real requests to a closed loopback port.
func TestClassifyClientGoErrors(t *testing.T) {
	client, err := kubernetes.NewForConfig(&rest.Config{Host: "http://" + closedPort(t), QPS: 0.01, Burst: 1})
	require.NoError(t, err)
	configMaps := client.CoreV1().ConfigMaps("runs")
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cm-1"}}

	// The first request takes the rate limiter's only token and is refused.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, refused := configMaps.Create(ctx, cm, metav1.CreateOptions{})
	require.Error(t, refused)

	// The second would wait 100 s for a token, past its deadline.
	ctx, cancel = context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, throttled := configMaps.Create(ctx, cm, metav1.CreateOptions{})
	require.Error(t, throttled)

	assert.ErrorIs(t, classify(refused, "creating configmap"), run.ErrUnavailable, "error: %v", refused)
	assert.ErrorIs(t, classify(throttled, "creating configmap"), run.ErrThrottled, "error: %v", throttled)
}
