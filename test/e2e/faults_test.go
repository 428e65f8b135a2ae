//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/scriptrun/scriptrun/function/kube"
	"github.com/scriptrun/scriptrun/function/run"
)

// These tests break the API server's side of a run, through faultProxy,
// RBAC or a quota, and check the class of the receiver's response and that
// it comes before the per-event deadline.

// Short limits so that a hang would show: the per-event deadline is
// faultTimeoutSeconds + faultWaitMarginSeconds.
const (
	faultTimeoutSeconds    = 5
	faultWaitMarginSeconds = 5
	// faultSlack covers process start-up and the HTTP round trip on top of
	// the per-event deadline.
	faultSlack = 3 * time.Second
)

func faultDeadline() time.Duration {
	return (faultTimeoutSeconds+faultWaitMarginSeconds)*time.Second + faultSlack
}

func TestRecoveryErrorClasses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// rules replace the deployment's receiver Role when not nil.
		rules func(t *testing.T) []rbacv1.PolicyRule
		env   map[string]string
		// setup runs before the receiver starts.
		setup func(ctx context.Context, t *testing.T, namespace string)
		// inject runs once the receiver is ready, before the event is sent.
		inject     func(proxy *faultProxy)
		wantStatus int
		wantBody   func(namespace, runID string) []string
	}{
		{
			name:       "API server unreachable",
			inject:     func(proxy *faultProxy) { proxy.SetUnreachable() },
			wantStatus: http.StatusServiceUnavailable,
			wantBody: func(namespace, runID string) []string {
				return []string{run.ErrUnavailable.Error(),
					fmt.Sprintf("creating configmap %s/%s", namespace, kube.ConfigMapName(runID))}
			},
		},
		{
			name: "API server answers 503",
			inject: func(proxy *faultProxy) {
				proxy.Fail(http.MethodPost, `^/api/v1/namespaces/[^/]+/configmaps$`, faultWith503)
			},
			wantStatus: http.StatusServiceUnavailable,
			wantBody: func(namespace, runID string) []string {
				return []string{run.ErrUnavailable.Error(),
					fmt.Sprintf("creating configmap %s/%s", namespace, kube.ConfigMapName(runID)),
					"the API server is unavailable"}
			},
		},
		{
			// One request per 20 seconds: the informers' lists and watches
			// take the tokens, and the run's first call would wait past its
			// deadline.
			name:       "client-side throttling",
			env:        map[string]string{"SCRIPTRUN_KUBE_QPS": "0.05", "SCRIPTRUN_KUBE_BURST": "1"},
			wantStatus: http.StatusTooManyRequests,
			wantBody: func(namespace, runID string) []string {
				return []string{run.ErrThrottled.Error(), "client rate limiter",
					fmt.Sprintf("creating configmap %s/%s", namespace, kube.ConfigMapName(runID))}
			},
		},
		{
			name:       "configmap quota exceeded",
			setup:      faultQuotaAtCurrentCount,
			wantStatus: http.StatusTooManyRequests,
			wantBody: func(namespace, runID string) []string {
				return []string{run.ErrThrottled.Error(), "exceeded quota",
					fmt.Sprintf("creating configmap %s/%s", namespace, kube.ConfigMapName(runID))}
			},
		},
		{
			name:       "job creation forbidden",
			rules:      faultRulesWithoutJobCreate,
			wantStatus: http.StatusInternalServerError,
			wantBody: func(namespace, runID string) []string {
				return []string{run.ErrInternal.Error(),
					fmt.Sprintf("creating job %s/%s", namespace, kube.JobName(runID)),
					`cannot create resource "jobs" in API group "batch"`}
			},
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t, 3*time.Minute)
			namespace := NewNamespace(t, restrictedNamespace)
			proxy := startFaultProxy(t)
			var rules []rbacv1.PolicyRule
			if tt.rules != nil {
				rules = tt.rules(t)
			}
			kubeconfig := grantFaultReceiver(t, namespace, rules, proxy)
			if tt.setup != nil {
				tt.setup(ctx, t, namespace)
			}
			env := map[string]string{"SCRIPTRUN_WAIT_MARGIN_SECONDS": fmt.Sprint(faultWaitMarginSeconds)}
			for name, value := range tt.env {
				env[name] = value
			}
			receiver := startFaultReceiver(t, kubeconfig, namespace, env)
			if tt.inject != nil {
				tt.inject(proxy)
			}

			requestID := fmt.Sprintf("fault-%d", i)
			runID := run.ID(requestID, "", "")
			reply := SendEvent(t, receiver.URL, requestID+"-event",
				recoveryRunRequest(requestID, 0, "never printed", faultTimeoutSeconds))

			t.Logf("answered %d after %.2fs: %s", reply.Status, reply.Elapsed.Seconds(), reply.Body)
			assert.Equal(t, tt.wantStatus, reply.Status, reply.Body)
			for _, want := range tt.wantBody(namespace, runID) {
				assert.Contains(t, reply.Body, want)
			}
			assert.Equal(t, "5", reply.Header.Get("Retry-After"), "Retry-After header")
			assert.Less(t, reply.Elapsed, faultDeadline(), "time to answer; the per-event deadline is %ds",
				faultTimeoutSeconds+faultWaitMarginSeconds)
			if tt.wantStatus == http.StatusInternalServerError {
				// A failed Job creation deletes the ConfigMap it would have used.
				assert.Empty(t, faultRunConfigMaps(ctx, t, namespace, runID), "configmaps of run %s", runID)
			}
		})
	}
}

// faultRulesWithoutJobCreate returns the deployment's receiver rules less
// the right to create Jobs.
func faultRulesWithoutJobCreate(t *testing.T) []rbacv1.PolicyRule {
	t.Helper()
	rules := receiverRole(t)
	removed := false
	for i, rule := range rules {
		if slices.Contains(rule.APIGroups, "batch") && slices.Contains(rule.Resources, "jobs") {
			rules[i].Verbs = slices.DeleteFunc(slices.Clone(rule.Verbs), func(verb string) bool { return verb == "create" })
			removed = true
		}
	}
	require.True(t, removed, "the receiver Role has no rule for batch jobs")
	return rules
}

// faultQuotaAtCurrentCount creates a ResourceQuota that allows as many
// ConfigMaps as the namespace has, and waits until the quota controller has
// counted them: before that, the API server rejects every ConfigMap with a
// different message ("status unknown for quota").
func faultQuotaAtCurrentCount(ctx context.Context, t *testing.T, namespace string) {
	t.Helper()
	configMaps := cluster.Client.CoreV1().ConfigMaps(namespace)
	// The root CA publisher adds kube-root-ca.crt to each new namespace.
	faultPollUntil(ctx, t, 100*time.Millisecond, "kube-root-ca.crt exists", func(ctx context.Context) (bool, error) {
		_, err := configMaps.Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
		return err == nil, nil
	})
	list, err := configMaps.List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	count := resource.MustParse(fmt.Sprint(len(list.Items)))

	quotas := cluster.Client.CoreV1().ResourceQuotas(namespace)
	_, err = quotas.Create(ctx, &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Name: "configmaps"},
		Spec:       corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{"count/configmaps": count}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	faultPollUntil(ctx, t, 100*time.Millisecond, "the quota controller counts configmaps", func(ctx context.Context) (bool, error) {
		quota, err := quotas.Get(ctx, "configmaps", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		used, ok := quota.Status.Used["count/configmaps"]
		return ok && used.Cmp(count) == 0, nil
	})
	t.Logf("quota allows %s configmaps, all in use", count.String())
}

// TestRecoveryAPIServerRestart cuts the receiver's watches while a run waits
// and responds to the next watch of each informer with 410 Gone, as a
// restarted API server does. The informers must relist, and the run must finish.
func TestRecoveryAPIServerRestart(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, 3*time.Minute)
	namespace := NewNamespace(t, restrictedNamespace)
	proxy := startFaultProxy(t)
	kubeconfig := grantFaultReceiver(t, namespace, nil, proxy)
	receiver := startFaultReceiver(t, kubeconfig, namespace,
		map[string]string{"SCRIPTRUN_WAIT_MARGIN_SECONDS": fmt.Sprint(faultWaitMarginSeconds)})

	const timeoutSeconds = 20
	requestID := "restart"
	runID := run.ID(requestID, "", "")
	replies := faultPostAsync(ctx, receiver.URL, requestID+"-event",
		recoveryRunRequest(requestID, 4, "survived a restart", timeoutSeconds))
	faultPollUntil(ctx, t, 100*time.Millisecond, "the script starts", func(ctx context.Context) (bool, error) {
		return faultScriptStarted(ctx, namespace, runID)
	})
	require.Equal(t, 2, proxy.OpenWatches(), "watch streams of the receiver's two informers")
	restarted := time.Now()
	proxy.CloseWatches(2)

	reply := faultReceiveReply(ctx, t, replies)
	require.NoError(t, reply.Err)
	require.Equal(t, http.StatusOK, reply.Reply.Status, reply.Reply.Body)
	assert.Equal(t, run.StatusSucceeded, reply.Reply.Result.Status, reply.Reply.Result.Message)
	assert.Equal(t, "survived a restart\n", reply.Reply.Result.Output)
	assert.Less(t, reply.Reply.Elapsed, (timeoutSeconds+faultWaitMarginSeconds)*time.Second,
		"time to answer; the per-event deadline is %ds", timeoutSeconds+faultWaitMarginSeconds)
	t.Logf("answered %.1fs after the restart", time.Since(restarted).Seconds())

	// Each informer that got 410 Gone must have listed again.
	requests := proxy.Requests()
	gone := 0
	for i, r := range requests {
		if r.Status != http.StatusGone {
			continue
		}
		gone++
		relisted := slices.ContainsFunc(requests[i+1:], func(later faultProxyRequest) bool {
			return later.Method == http.MethodGet && later.Path == r.Path && !later.Watch && later.Status == http.StatusOK
		})
		assert.True(t, relisted, "no list of %s after its watch got 410 Gone", r.Path)
	}
	assert.Equal(t, 2, gone, "watches answered with 410 Gone")
	t.Logf("%d watches answered with 410 Gone, each followed by a list", gone)
}
