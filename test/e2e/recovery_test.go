//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/scriptrun/scriptrun/function/kube"
	"github.com/scriptrun/scriptrun/function/run"
	"github.com/scriptrun/scriptrun/function/sweep"
)

// These tests kill, stop and load the receiver and check that no run is
// lost, started twice or leaked.

// recoveryJobTTLSeconds is the Jobs' ttlSecondsAfterFinished in these tests,
// short so that a test can see the TTL controller delete a Job.
const recoveryJobTTLSeconds = 5

// recoveryRunRequest returns a python run that sleeps, then prints output.
func recoveryRunRequest(requestID string, sleepSeconds float64, output string, timeoutSeconds int) map[string]any {
	return map[string]any{
		"language":       "python",
		"script":         fmt.Sprintf("import time\ntime.sleep(%g)\nprint(%q)\n", sleepSeconds, output),
		"requestId":      requestID,
		"timeoutSeconds": timeoutSeconds,
	}
}

// TestRecoveryAfterCrash kills the receiver process with SIGKILL at each
// step of a run, then delivers the event again to a new receiver process.
// The new one finishes the same run with a single Job. Nothing is left once
// the Job's TTL has passed and the sweeper has run.
func TestRecoveryAfterCrash(t *testing.T) {
	t.Parallel()
	jobsPath := `^/apis/batch/v1/namespaces/[^/]+/jobs$`

	tests := []struct {
		name string
		// killPoint prepares the proxy before the event is sent and returns
		// a channel that is closed when the receiver has reached the step
		// at which the test kills it.
		killPoint func(ctx context.Context, proxy *faultProxy, namespace, runID string) <-chan struct{}
	}{
		{
			name: "after configmap created",
			killPoint: func(_ context.Context, proxy *faultProxy, _, _ string) <-chan struct{} {
				return proxy.Hold(http.MethodPost, jobsPath).Arrived()
			},
		},
		{
			name: "after job created",
			killPoint: func(_ context.Context, proxy *faultProxy, namespace, runID string) <-chan struct{} {
				ownerPatch := fmt.Sprintf(`^/api/v1/namespaces/%s/configmaps/%s$`, namespace, kube.ConfigMapName(runID))
				return proxy.Hold(http.MethodPatch, ownerPatch).Arrived()
			},
		},
		{
			name: "while waiting for the job",
			killPoint: func(ctx context.Context, _ *faultProxy, namespace, runID string) <-chan struct{} {
				return recoveryOwnedSignal(ctx, namespace, kube.ConfigMapName(runID))
			},
		},
		{
			name: "while reading logs",
			killPoint: func(_ context.Context, proxy *faultProxy, _, _ string) <-chan struct{} {
				return proxy.Hold(http.MethodGet, `^/api/v1/namespaces/[^/]+/pods/[^/]+/log$`).Arrived()
			},
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t, 3*time.Minute)
			namespace := NewNamespace(t, restrictedNamespace)
			proxy := startFaultProxy(t)
			kubeconfig := grantFaultReceiver(t, namespace, nil, proxy)
			jobs := faultWatchJobCreations(t, namespace)

			requestID := fmt.Sprintf("crash-%d", i)
			runID := run.ID(requestID, "", "")
			eventID := requestID + "-event"
			request := recoveryRunRequest(requestID, 4, "recovered after crash", 30)
			env := map[string]string{"SCRIPTRUN_JOB_TTL_SECONDS": strconv.Itoa(recoveryJobTTLSeconds)}

			reached := tt.killPoint(ctx, proxy, namespace, runID)
			first := startFaultReceiver(t, kubeconfig, namespace, env)
			firstReply := faultPostAsync(ctx, first.URL, eventID, request)
			select {
			case <-reached:
			case reply := <-firstReply:
				t.Fatalf("the receiver answered before the kill point: %v: HTTP %d %s",
					reply.Err, reply.Reply.Status, reply.Reply.Body)
			case <-ctx.Done():
				t.Fatalf("the receiver did not reach the kill point: %v", ctx.Err())
			}
			first.Kill(t)
			killed := faultReceiveReply(ctx, t, firstReply)
			assert.Error(t, killed.Err, "the killed receiver answered HTTP %d %s", killed.Reply.Status, killed.Reply.Body)

			proxy.ClearRules()
			second := startFaultReceiver(t, kubeconfig, namespace, env)
			reply := SendEvent(t, second.URL, eventID, request)

			require.Equal(t, http.StatusOK, reply.Status, reply.Body)
			assert.Equal(t, run.StatusSucceeded, reply.Result.Status, reply.Result.Message)
			assert.Equal(t, "recovered after crash\n", reply.Result.Output)
			assert.Equal(t, runID+"-completed", reply.Header.Get("Ce-Id"))
			assert.Equal(t, 1, jobs.Count(kube.JobName(runID)), "jobs ever created for run %s", runID)
			assert.Equal(t, 1, proxy.CountRequests(http.MethodPost, jobsPath, http.StatusCreated),
				"job creations that the API server accepted")
			t.Logf("redelivered run answered in %.1fs", reply.Elapsed.Seconds())

			recoveryWaitJobDeleted(ctx, t, namespace, kube.JobName(runID))
			report, err := sweep.New(cluster.Client, sweep.Options{Namespace: namespace, MinAge: 0}).Sweep(ctx)
			require.NoError(t, err, "sweeping %s", namespace)
			t.Logf("sweep deleted %v and kept %d", report.Deleted, report.Kept)
			assert.Empty(t, faultRunConfigMaps(ctx, t, namespace, runID), "configmaps of run %s", runID)
		})
	}
}

// recoveryOwnedSignal returns a channel that is closed once the
// ConfigMap has an owner reference to a Job, which the receiver sets right
// after it created the Job.
func recoveryOwnedSignal(ctx context.Context, namespace, name string) <-chan struct{} {
	owned := make(chan struct{})
	go func() {
		if recoveryPollOwner(ctx, namespace, name) == nil {
			close(owned)
		}
	}()
	return owned
}

func recoveryPollOwner(ctx context.Context, namespace, name string) error {
	ticker := time.NewTicker(50 * time.Millisecond)
	defer ticker.Stop()
	for {
		cm, err := cluster.Client.CoreV1().ConfigMaps(namespace).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			for _, ref := range cm.OwnerReferences {
				if ref.Kind == "Job" {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ticker.C:
		}
	}
}

// recoveryWaitJobDeleted waits until the Job is gone, as the TTL controller
// deletes it recoveryJobTTLSeconds after it finished.
func recoveryWaitJobDeleted(ctx context.Context, t *testing.T, namespace, name string) {
	t.Helper()
	start := time.Now()
	faultPollUntil(ctx, t, 250*time.Millisecond, "job "+name+" is deleted", func(ctx context.Context) (bool, error) {
		_, err := cluster.Client.BatchV1().Jobs(namespace).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
	t.Logf("job %s deleted by its TTL %.1fs after the reply", name, time.Since(start).Seconds())
}

// TestRecoveryGracefulShutdown sends SIGTERM to a receiver process with two
// runs in flight. The run that fits in the grace period gets its reply, and
// the other gets a retryable 503. A new receiver then returns the result of
// the same Job when that event is delivered again.
func TestRecoveryGracefulShutdown(t *testing.T) {
	t.Parallel()
	const graceSeconds = 3
	ctx := testContext(t, 3*time.Minute)
	namespace := NewNamespace(t, restrictedNamespace)
	kubeconfig := GrantReceiver(t, namespace, nil)
	jobs := faultWatchJobCreations(t, namespace)
	env := map[string]string{"SCRIPTRUN_SHUTDOWN_GRACE_SECONDS": strconv.Itoa(graceSeconds)}
	receiver := startFaultReceiver(t, kubeconfig, namespace, env)

	longRequest := recoveryRunRequest("shutdown-long", 25, "long run", 60)
	longRunID := run.ID("shutdown-long", "", "")
	longReply := faultPostAsync(ctx, receiver.URL, "shutdown-long-event", longRequest)
	faultPollUntil(ctx, t, 100*time.Millisecond, "the long run's script starts", func(ctx context.Context) (bool, error) {
		return faultScriptStarted(ctx, namespace, longRunID)
	})

	shortRequest := recoveryRunRequest("shutdown-short", 1, "short run", 30)
	shortReply := faultPostAsync(ctx, receiver.URL, "shutdown-short-event", shortRequest)
	faultPollUntil(ctx, t, 100*time.Millisecond, "the short run's script starts", func(ctx context.Context) (bool, error) {
		return faultScriptStarted(ctx, namespace, run.ID("shutdown-short", "", ""))
	})
	require.Empty(t, shortReply, "the short run was answered before SIGTERM")
	require.Empty(t, longReply, "the long run was answered before SIGTERM")

	signalled := time.Now()
	receiver.Terminate(t)

	refusedAfter, refused := recoveryWaitRefused(receiver.Port, 2*time.Second)
	assert.True(t, refused, "new connections to port %d were still accepted 2s after SIGTERM", receiver.Port)
	t.Logf("new connections refused %s after SIGTERM", refusedAfter.Round(time.Millisecond))

	short := faultReceiveReply(ctx, t, shortReply)
	require.NoError(t, short.Err)
	assert.Equal(t, http.StatusOK, short.Reply.Status, short.Reply.Body)
	assert.Equal(t, run.StatusSucceeded, short.Reply.Result.Status, short.Reply.Result.Message)
	assert.Equal(t, "short run\n", short.Reply.Result.Output)
	t.Logf("short run answered %.1fs after SIGTERM", time.Since(signalled).Seconds())

	long := faultReceiveReply(ctx, t, longReply)
	abortedAfter := time.Since(signalled)
	require.NoError(t, long.Err)
	assert.Equal(t, http.StatusServiceUnavailable, long.Reply.Status, long.Reply.Body)
	assert.Contains(t, long.Reply.Body, "receiver is shutting down")
	assert.Equal(t, "5", long.Reply.Header.Get("Retry-After"))
	assert.GreaterOrEqual(t, abortedAfter, graceSeconds*time.Second-100*time.Millisecond, "the long run was aborted before the grace period ended")
	assert.Less(t, abortedAfter, (graceSeconds+5)*time.Second, "the long run was answered long after the grace period")
	t.Logf("long run answered with %d %.1fs after SIGTERM", long.Reply.Status, abortedAfter.Seconds())

	assert.NoError(t, receiver.WaitExit(t, 20*time.Second), "exit status of the stopped receiver")

	fresh := startFaultReceiver(t, kubeconfig, namespace, nil)
	redelivered := SendEvent(t, fresh.URL, "shutdown-long-event", longRequest)
	require.Equal(t, http.StatusOK, redelivered.Status, redelivered.Body)
	assert.Equal(t, run.StatusSucceeded, redelivered.Result.Status, redelivered.Result.Message)
	assert.Equal(t, "long run\n", redelivered.Result.Output)
	require.NotNil(t, redelivered.Result.StartedAt)
	assert.True(t, redelivered.Result.StartedAt.Before(signalled),
		"the redelivered run started at %s, after SIGTERM at %s: not the first Job", redelivered.Result.StartedAt, signalled)
	assert.Equal(t, 1, jobs.Count(kube.JobName(longRunID)), "jobs ever created for the long run")
}

// recoveryWaitRefused dials port until a connection is refused or timeout
// passes, and returns how long that took and whether it happened.
func recoveryWaitRefused(port int, timeout time.Duration) (time.Duration, bool) {
	start := time.Now()
	address := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for time.Since(start) < timeout {
		conn, err := net.DialTimeout("tcp", address, 100*time.Millisecond)
		if err != nil {
			return time.Since(start), strings.Contains(err.Error(), "connection refused")
		}
		_ = conn.Close()
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start), false
}

// TestRecoveryNoLeaks runs 40 scripts, 8 at a time, through a receiver in
// this process and checks that its goroutines and the API server's watches
// return to where they were after the first run.
//
// It does not call t.Parallel: it counts this process's goroutines, so no
// other test may run meanwhile. Go runs parallel tests only after all
// sequential ones.
func TestRecoveryNoLeaks(t *testing.T) {
	const (
		runs                = 40
		batchSize           = 8
		goroutineTolerance  = 5
		goroutineSettleTime = 10 * time.Second
	)
	ctx := testContext(t, 5*time.Minute)
	namespace := NewNamespace(t, restrictedNamespace)
	proxy := startFaultProxy(t)
	cfg := ReceiverConfig(namespace, grantFaultReceiver(t, namespace, nil, proxy))
	cfg.LogLevel = "info"
	receiver := StartReceiver(t, cfg)

	warmUp := SendEvent(t, receiver.URL, "leak-warm-up", recoveryRunRequest("leak-warm-up", 0, "warm", 30))
	require.Equal(t, http.StatusOK, warmUp.Status, warmUp.Body)
	require.Equal(t, run.StatusSucceeded, warmUp.Result.Status, warmUp.Result.Message)

	baseline := recoverySettledGoroutines(proxy, time.Second)
	watchesBefore := recoveryAPIServerWatches(ctx, t)
	proxyWatchesBefore := proxy.OpenWatches()
	t.Logf("after the warm-up run: %d goroutines, %d API server watches (%d of namespaced jobs and pods), %d watches through the receiver's proxy",
		baseline, watchesBefore.total, watchesBefore.runObjects, proxyWatchesBefore)

	start := time.Now()
	for batch := 0; batch < runs/batchSize; batch++ {
		replies := make([]<-chan faultAsyncReply, batchSize)
		for i := range replies {
			n := batch*batchSize + i
			requestID := fmt.Sprintf("leak-%d", n)
			replies[i] = faultPostAsync(ctx, receiver.URL, requestID, recoveryRunRequest(requestID, 0, "run "+strconv.Itoa(n), 30))
		}
		for i, replyChannel := range replies {
			n := batch*batchSize + i
			reply := faultReceiveReply(ctx, t, replyChannel)
			require.NoError(t, reply.Err, "run %d", n)
			if assert.Equal(t, http.StatusOK, reply.Reply.Status, "run %d: %s", n, reply.Reply.Body) {
				assert.Equal(t, run.StatusSucceeded, reply.Reply.Result.Status, "run %d: %s", n, reply.Reply.Result.Message)
				assert.Equal(t, fmt.Sprintf("run %d\n", n), reply.Reply.Result.Output, "run %d", n)
			}
		}
	}
	t.Logf("%d runs, %d at a time, took %.1fs", runs, batchSize, time.Since(start).Seconds())

	settleStart := time.Now()
	var after int
	for {
		after = recoverySettledGoroutines(proxy, 200*time.Millisecond)
		if after <= baseline+goroutineTolerance || time.Since(settleStart) > goroutineSettleTime {
			break
		}
	}
	t.Logf("goroutines: %d after the warm-up run, %d after %d runs (settled for %.1fs)",
		baseline, after, runs, time.Since(settleStart).Seconds())
	assert.LessOrEqual(t, after, baseline+goroutineTolerance, "goroutines after %d runs", runs)

	// The API server's gauge counts every client of the cluster, including
	// test runs in other processes, whose watches may end meanwhile. So the
	// check is that the count did not grow; in a run of this suite alone it
	// stays equal. The proxy's count covers this receiver alone and must be
	// equal.
	grew := func(now recoveryWatchCount) bool {
		return now.total > watchesBefore.total || now.runObjects > watchesBefore.runObjects
	}
	watchesAfter := recoveryAPIServerWatches(ctx, t)
	for deadline := time.Now().Add(10 * time.Second); grew(watchesAfter) && time.Now().Before(deadline); {
		time.Sleep(250 * time.Millisecond)
		watchesAfter = recoveryAPIServerWatches(ctx, t)
	}
	t.Logf("API server watches before and after %d runs: %d and %d in all, %d and %d of namespaced jobs and pods",
		runs, watchesBefore.total, watchesAfter.total, watchesBefore.runObjects, watchesAfter.runObjects)
	assert.LessOrEqual(t, watchesAfter.total, watchesBefore.total, "API server watches (apiserver_longrunning_requests, verb WATCH)")
	assert.LessOrEqual(t, watchesAfter.runObjects, watchesBefore.runObjects, "API server watches of namespaced jobs and pods")
	assert.Equal(t, proxyWatchesBefore, proxy.OpenWatches(), "watch streams open through the receiver's proxy")

	leftover, err := cluster.Client.CoreV1().ConfigMaps(namespace).List(ctx, metav1.ListOptions{
		LabelSelector: kube.AppLabel + "=" + kube.AppValue,
	})
	require.NoError(t, err)
	assert.Empty(t, leftover.Items, "run configmaps left after %d runs", runs)
}

// recoverySettledGoroutines closes idle HTTP connections, whose goroutines
// are pooled, not leaked, then waits for the count of goroutines to stay the
// same for period and returns it. The receiver's Kubernetes client talks
// plain HTTP to the proxy, so client-go gives it http.DefaultTransport.
func recoverySettledGoroutines(proxy *faultProxy, period time.Duration) int {
	http.DefaultClient.CloseIdleConnections()
	proxy.upstream.CloseIdleConnections()
	count := runtime.NumGoroutine()
	stableSince := time.Now()
	for time.Since(stableSince) < period {
		time.Sleep(20 * time.Millisecond)
		if now := runtime.NumGoroutine(); now != count {
			count, stableSince = now, time.Now()
		}
	}
	return count
}

// recoveryWatchCount is the API server's count of open watch requests.
type recoveryWatchCount struct {
	// total is over all resources and clients.
	total int
	// runObjects counts the watches of jobs and pods in a namespace, the
	// kinds that the receiver's informers watch.
	runObjects int
}

// recoveryAPIServerWatches sums the API server's gauge of open watch
// requests, apiserver_longrunning_requests{verb="WATCH"}, from its /metrics.
func recoveryAPIServerWatches(ctx context.Context, t *testing.T) recoveryWatchCount {
	t.Helper()
	data, err := cluster.Client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	require.NoError(t, err, "reading the API server's /metrics")
	var count recoveryWatchCount
	found := false
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, "apiserver_longrunning_requests{") || !strings.Contains(line, `verb="WATCH"`) {
			continue
		}
		fields := strings.Fields(line)
		value, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		require.NoError(t, err, "parsing metric line %q", line)
		found = true
		count.total += int(value)
		runObject := strings.Contains(line, `resource="jobs"`) || strings.Contains(line, `resource="pods"`)
		if runObject && strings.Contains(line, `scope="namespace"`) {
			count.runObjects += int(value)
		}
	}
	require.True(t, found, "the API server's /metrics has no apiserver_longrunning_requests with verb WATCH")
	return count
}
