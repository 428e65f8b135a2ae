//go:build e2e

package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/scriptrun/scriptrun/function"
	"github.com/scriptrun/scriptrun/function/kube"
	"github.com/scriptrun/scriptrun/function/run"
)

// These tests send hostile input and redelivered events to a receiver served
// in the test process, which runs the scripts as Jobs on the test cluster.
// The helpers they share with runs_test.go start with runs.

// limitsSent is the outcome of one event sent from a goroutine.
type limitsSent struct {
	reply Reply
	err   error
}

// limitsPost sends the event from a new goroutine and returns a channel that
// receives the response.
func limitsPost(ctx context.Context, url, eventID string, request run.Request) <-chan limitsSent {
	response := make(chan limitsSent, 1)
	go func() {
		reply, err := PostEvent(ctx, url, eventID, request)
		response <- limitsSent{reply: reply, err: err}
	}()
	return response
}

// limitsAssertSameReply checks that a redelivery got the original reply: the
// same HTTP status, CloudEvents id and data.
func limitsAssertSameReply(t *testing.T, original, redelivered Reply, delivery string) {
	t.Helper()
	assert.Equal(t, original.Status, redelivered.Status, "HTTP status of the %s", delivery)
	assert.Equal(t, original.Header.Get("Ce-Id"), redelivered.Header.Get("Ce-Id"), "Ce-Id of the %s", delivery)
	assert.Equal(t, original.Body, redelivered.Body, "body of the %s", delivery)
}

func TestLimitsRedeliveryWhileJobExists(t *testing.T) {
	t.Parallel()
	receiver := runsStartReceiver(t, nil)
	ctx := testContext(t, 2*time.Minute)
	const eventID = "redelivered"
	request := run.Request{
		Language: "python",
		Script:   "import time\nprint('started')\ntime.sleep(4)\nprint('finished')\n",
	}

	firstResponse := limitsPost(ctx, receiver.URL, eventID, request)
	// A broker that gives up on the first delivery sends the event again
	// while the script still runs.
	time.Sleep(time.Second)
	select {
	case sent := <-firstResponse:
		require.FailNow(t, "the first delivery got a response within 1 s", "response: %+v", sent)
	default:
	}
	duringRun := SendEvent(t, receiver.URL, eventID, request)
	first := <-firstResponse
	require.NoError(t, first.err, "sending the first delivery")

	result := runsRequireResult(t, first.reply)
	assert.Equal(t, run.StatusSucceeded, result.Status, "status; message: %s", result.Message)
	assert.Equal(t, "started\nfinished\n", result.Output)
	runID := run.ID("", runsEventSource, eventID)
	assert.Equal(t, runID+"-completed", first.reply.Header.Get("Ce-Id"), "Ce-Id")
	limitsAssertSameReply(t, first.reply, duringRun, "redelivery during the run")

	// The reply comes when the container ends, and the Job's Complete
	// condition follows.
	jobs := runsJobsOfRun(ctx, t, receiver.Namespace, runID)
	require.Len(t, jobs, 1, "jobs of run %s after the run", runID)
	WaitForJobFinished(ctx, t, receiver.Namespace, jobs[0].Name)

	// The Job outlives the run by its TTL (300 s here), so a redelivery now
	// reads the finished run's output again.
	afterRun := SendEvent(t, receiver.URL, eventID, request)
	limitsAssertSameReply(t, first.reply, afterRun, "redelivery after the run")
	t.Logf("responses: first after %.1f s, redelivery during the run after %.1f s, redelivery after the run after %.1f s",
		first.reply.Elapsed.Seconds(), duringRun.Elapsed.Seconds(), afterRun.Elapsed.Seconds())

	after := runsJobsOfRun(ctx, t, receiver.Namespace, runID)
	require.Len(t, after, 1, "jobs of run %s after the redeliveries", runID)
	assert.Equal(t, jobs[0].UID, after[0].UID, "UID of the run's job")
	configMaps, _ := runsRunObjects(ctx, t, receiver.Namespace)
	assert.Empty(t, configMaps, "configmaps left behind")
}

func TestLimitsRedeliveryAfterJobTTL(t *testing.T) {
	t.Parallel()
	const ttlSeconds = 3
	receiver := runsStartReceiver(t, func(cfg *function.Config) { cfg.JobTTLSeconds = ttlSeconds })
	ctx := testContext(t, 2*time.Minute)
	const eventID = "redelivered-late"
	request := run.Request{Language: "python", Script: "print('ran')\n"}
	runID := run.ID("", runsEventSource, eventID)

	first := SendEvent(t, receiver.URL, eventID, request)
	firstResult := runsRequireResult(t, first)
	require.Equal(t, run.StatusSucceeded, firstResult.Status, "status of the first run; message: %s", firstResult.Message)
	jobs := runsJobsOfRun(ctx, t, receiver.Namespace, runID)
	require.Len(t, jobs, 1, "jobs of run %s", runID)
	firstJob := jobs[0]

	// The TTL controller deletes the Job in the foreground: the Job is gone
	// only once its pod is.
	deadline, cancel := context.WithTimeout(ctx, (ttlSeconds+30)*time.Second)
	defer cancel()
	runsWaitForDeletion(deadline, t, cluster.Client.BatchV1().RESTClient(), "jobs", &batchv1.Job{},
		receiver.Namespace, firstJob.Name)
	require.Empty(t, JobPods(ctx, t, receiver.Namespace, firstJob.Name), "pods of the deleted job")

	second := SendEvent(t, receiver.URL, eventID, request)

	secondResult := runsRequireResult(t, second)
	assert.Equal(t, run.StatusSucceeded, secondResult.Status, "status of the second run; message: %s", secondResult.Message)
	assert.Equal(t, "ran\n", secondResult.Output, "output of the second run")
	assert.Equal(t, first.Header.Get("Ce-Id"), second.Header.Get("Ce-Id"), "Ce-Id, which derives from the run id")
	jobs = runsJobsOfRun(ctx, t, receiver.Namespace, runID)
	require.Len(t, jobs, 1, "jobs of run %s after the redelivery", runID)
	secondJob := jobs[0]
	assert.Equal(t, firstJob.Name, secondJob.Name, "job name")
	assert.NotEqual(t, firstJob.UID, secondJob.UID, "job UID")
	t.Logf("a redelivery after the job's TTL ran the script again: job %s UID %s, then UID %s; "+
		"the same Ce-Id %s; first run started %v, second %v; bodies equal: %t",
		secondJob.Name, firstJob.UID, secondJob.UID, second.Header.Get("Ce-Id"),
		limitsTime(firstResult.StartedAt), limitsTime(secondResult.StartedAt), first.Body == second.Body)
}

func limitsTime(at *time.Time) string {
	if at == nil {
		return "(none)"
	}
	return at.Format(time.RFC3339)
}

// limitsPodPidsMax reads pids.max of the pod's own cgroup, the one that the
// kubelet's podPidsLimit sets. A container cannot read it: on cgroup v1
// without a cgroup namespace, the container's /sys/fs/cgroup/pids is its own
// cgroup, one level below the pod's, and shows "max". So the test reads the
// file on this machine, where the single node runs with the cgroupfs driver
// and pods' cgroups under <root>/kubepods[/<qos class>]/pod<uid>.
// The pod's cgroup exists only while the pod runs.
func limitsPodPidsMax(t *testing.T, pod *corev1.Pod) string {
	t.Helper()
	var paths []string
	for _, pattern := range []string{
		"/sys/fs/cgroup/pids/*/kubepods/pod%s/pids.max",
		"/sys/fs/cgroup/pids/*/kubepods/*/pod%s/pids.max",
	} {
		matches, err := filepath.Glob(fmt.Sprintf(pattern, pod.UID))
		require.NoError(t, err, "pattern %s", pattern)
		paths = append(paths, matches...)
	}
	require.Len(t, paths, 1, "pids cgroups of pod %s (UID %s) on this machine", pod.Name, pod.UID)
	data, err := os.ReadFile(paths[0])
	require.NoError(t, err, "reading the pod's pids.max")
	t.Logf("%s: %s", paths[0], strings.TrimSpace(string(data)))
	return strings.TrimSpace(string(data))
}

// limitsWaitForRunningPod watches the pods of a run until one is Running,
// and returns it.
func limitsWaitForRunningPod(ctx context.Context, t *testing.T, namespace, runID string) *corev1.Pod {
	t.Helper()
	listWatch := cache.NewFilteredListWatchFromClient(cluster.Client.CoreV1().RESTClient(), "pods", namespace,
		func(options *metav1.ListOptions) { options.LabelSelector = kube.RunIDLabel + "=" + runID })
	event, err := watchtools.UntilWithSync(ctx, listWatch, &corev1.Pod{}, nil,
		func(event watch.Event) (bool, error) {
			pod, ok := event.Object.(*corev1.Pod)
			return ok && event.Type != watch.Deleted && pod.Status.Phase == corev1.PodRunning, nil
		})
	require.NoError(t, err, "waiting for a running pod of run %s", runID)
	return event.Object.(*corev1.Pod)
}

func TestLimitsForkBomb(t *testing.T) {
	t.Parallel()
	receiver := runsStartReceiver(t, nil)
	ctx := testContext(t, 2*time.Minute)

	bomb := SendEvent(t, receiver.URL, "fork-bomb", run.Request{
		Language:       "python",
		Script:         "import os\nwhile True: os.fork()\n",
		TimeoutSeconds: run.IntPtr(10),
	})

	t.Logf("the response to the fork bomb came after %.1f s", bomb.Elapsed.Seconds())
	// NOTE: killing the bomb at its deadline can take a minute or more on
	// the test node: its 256 processes sit at the 128Mi memory limit with
	// 200m of CPU, and while they exit they thrash in memory reclaim. The Job
	// controller sets FailureTarget (DeadlineExceeded) at the Job's deadline
	// but Failed only once the pod is gone. The receiver waits for Failed or
	// for the container to end, so it responds with HTTP 503 at its own
	// deadline instead of timed_out.
	result := runsRequireResult(t, bomb)
	t.Logf("fork bomb: status %s, exit code %s, message %q, output starts %q",
		result.Status, limitsExitCode(result.ExitCode), result.Message, limitsHead(result.Output, 300))
	// Which limit ends the bomb first varies: fork failing with EAGAIN at
	// the pids limit ends the script with a traceback (failed), but 256
	// Python processes can also pass the 128Mi memory limit (oom_killed).
	assert.Contains(t, []run.Status{run.StatusFailed, run.StatusTimedOut, run.StatusOOMKilled}, result.Status, "status")

	node, err := cluster.Client.CoreV1().Nodes().Get(ctx, cluster.NodeName, metav1.GetOptions{})
	require.NoError(t, err, "getting node %s", cluster.NodeName)
	conditions := map[corev1.NodeConditionType]corev1.NodeCondition{}
	for _, condition := range node.Status.Conditions {
		conditions[condition.Type] = condition
	}
	assert.Equal(t, corev1.ConditionTrue, conditions[corev1.NodeReady].Status,
		"node Ready: %s", conditions[corev1.NodeReady].Message)
	assert.Equal(t, corev1.ConditionFalse, conditions[corev1.NodePIDPressure].Status,
		"node PIDPressure: %s", conditions[corev1.NodePIDPressure].Message)

	// A run after the bomb succeeds. It prints its container's pids.max and
	// sleeps, so that the test can read its pod's cgroup while it exists.
	const eventID = "after-fork-bomb"
	nextResponse := limitsPost(ctx, receiver.URL, eventID, run.Request{
		Language: "python",
		Script: `import time
with open("/sys/fs/cgroup/pids/pids.max") as f:
    print("container pids.max", f.read().strip())
time.sleep(3)
`,
	})
	pod := limitsWaitForRunningPod(ctx, t, receiver.Namespace, run.ID("", runsEventSource, eventID))
	podPidsMax := limitsPodPidsMax(t, pod)
	next := <-nextResponse
	require.NoError(t, next.err, "sending the run after the bomb")

	nextResult := runsRequireResult(t, next.reply)
	assert.Equal(t, run.StatusSucceeded, nextResult.Status, "status of the run after the bomb; message: %s", nextResult.Message)
	t.Logf("the run after the bomb printed %q", nextResult.Output)
	limit, err := strconv.Atoi(podPidsMax)
	require.NoError(t, err, "pids.max of the pod is %q, not a number, so the pids cgroup does not limit the pod", podPidsMax)
	assert.Positive(t, limit, "pids.max of the pod")
	assert.LessOrEqual(t, limit, 4096, "pids.max of the pod")
}

func limitsExitCode(code *int) string {
	if code == nil {
		return "(none)"
	}
	return strconv.Itoa(*code)
}

// limitsHead returns the first n characters of s, for logs.
func limitsHead(s string, n int) string {
	runes := []rune(s)
	if len(runes) <= n {
		return s
	}
	return string(runes[:n]) + "..."
}

func TestLimitsEndlessOutput(t *testing.T) {
	t.Parallel()
	receiver := runsStartReceiver(t, nil)
	maxOutputBytes := receiver.Config.MaxOutputBytes
	const line = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n"

	// Other tests in this process allocate and free memory too, so the
	// figures are approximate.
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	reply := SendEvent(t, receiver.URL, "endless-output", run.Request{
		Language:       "python",
		Script:         "import sys\nline = " + strconv.Quote(line) + " * 64\nwhile True:\n    sys.stdout.write(line)\n",
		TimeoutSeconds: run.IntPtr(5),
	})

	runtime.GC()
	runtime.ReadMemStats(&after)
	growth := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("heap in use after GC: %.1f MiB before the run, %.1f MiB after, growth %.1f MiB; reply after %.1f s",
		float64(before.HeapAlloc)/(1<<20), float64(after.HeapAlloc)/(1<<20), float64(growth)/(1<<20), reply.Elapsed.Seconds())

	result := runsRequireResult(t, reply)
	assert.Equal(t, run.StatusTimedOut, result.Status, "status; message: %s", result.Message)
	assert.True(t, result.OutputTruncated, "outputTruncated")
	assert.Len(t, result.Output, maxOutputBytes, "output length")
	assert.Equal(t, strings.Repeat(line, maxOutputBytes/len(line)+1)[:maxOutputBytes], result.Output, "output")
	assert.Less(t, growth, int64(32<<20), "heap growth in bytes")
}

func TestLimitsScriptTooLargeForConfigMap(t *testing.T) {
	t.Parallel()
	namespace := NewNamespace(t, restrictedNamespace)
	// Only what the receiver's informers need: a request that reached any
	// create call would be forbidden, and the receiver would respond with
	// HTTP 500, not with a rejected reply.
	readOnly := []rbacv1.PolicyRule{
		{APIGroups: []string{"batch"}, Resources: []string{"jobs"}, Verbs: []string{"list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list", "watch"}},
	}
	cfg := ReceiverConfig(namespace, GrantReceiver(t, namespace, readOnly))
	cfg.MaxScriptBytes = 1000000
	cfg.MaxStdinBytes = 0
	receiver := StartReceiver(t, cfg)
	ctx := testContext(t, time.Minute)

	script := "# " + strings.Repeat("x", 1100<<10)
	reply := SendEvent(t, receiver.URL, "too-large", run.Request{Language: "python", Script: script})

	result := runsRequireResult(t, reply)
	assert.Equal(t, run.StatusRejected, result.Status, "status")
	assert.Contains(t, result.Message, "script: ", "message")
	assert.Contains(t, result.Message, strconv.Itoa(len(script))+" bytes", "message")
	assert.Contains(t, result.Message, "limit of 1000000 bytes", "message")
	configMaps, jobs := runsRunObjects(ctx, t, namespace)
	assert.Empty(t, configMaps, "configmaps")
	assert.Empty(t, jobs, "jobs")
}

func TestLimitsRequestIDs(t *testing.T) {
	t.Parallel()
	receiver := runsStartReceiver(t, nil)
	ctx := testContext(t, 3*time.Minute)

	tests := []struct {
		name         string
		requestID    string
		wantRejected bool
	}{
		{name: "1 character", requestID: "a"},
		{name: "63 characters", requestID: strings.Repeat("b", 63)},
		{name: "64 characters", requestID: strings.Repeat("c", 64)},
		{name: "256 characters", requestID: strings.Repeat("Dé/", 85) + "d"},
		{name: "unicode", requestID: "提出-äöü-Ωmega"},
		{name: "emoji only", requestID: "🙂🚀"},
		{name: "slashes", requestID: "course/cs101/lab3/"},
		{name: "spaces", requestID: "lab 3 alice attempt 2"},
		{name: "dots", requestID: "v1.2.3..."},
		{name: "upper case", requestID: "LAB3-ALICE"},
		{name: "template placeholder", requestID: "{{JOB_NAME}}"},
		{name: "257 characters", requestID: strings.Repeat("e", 257), wantRejected: true},
	}
	responses := make([]<-chan limitsSent, len(tests))
	for i, tt := range tests {
		require.Equal(t, len([]rune(tt.requestID)) == 257, tt.wantRejected, "length of case %q", tt.name)
		responses[i] = limitsPost(ctx, receiver.URL, "request-id-"+strconv.Itoa(i), run.Request{
			Language:  "python",
			Script:    "import sys\nprint('ok', len(sys.argv))\n",
			RequestID: tt.requestID,
		})
	}
	sent := make([]limitsSent, len(tests))
	for i := range tests {
		sent[i] = <-responses[i]
	}
	jobs, err := cluster.Client.BatchV1().Jobs(receiver.Namespace).List(ctx, metav1.ListOptions{})
	require.NoError(t, err, "listing jobs")
	jobsByRequestID := map[string]batchv1.Job{}
	for _, job := range jobs.Items {
		jobsByRequestID[job.Annotations[kube.RequestIDAnnotation]] = job
	}

	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.NoError(t, sent[i].err, "sending the event")
			result := runsRequireResult(t, sent[i].reply)
			if tt.wantRejected {
				assert.Equal(t, run.StatusRejected, result.Status, "status")
				assert.Contains(t, result.Message, "requestId", "message")
				assert.Contains(t, result.Message, "257 characters", "message")
				return
			}

			assert.Equal(t, run.StatusSucceeded, result.Status, "status; message: %s", result.Message)
			assert.Equal(t, "ok 1\n", result.Output, "output")
			assert.Equal(t, tt.requestID, result.RequestID, "requestId in the reply")

			job, found := jobsByRequestID[tt.requestID]
			require.True(t, found, "no job has annotation %s=%q", kube.RequestIDAnnotation, tt.requestID)
			t.Logf("requestId %q ran as job %s", limitsHead(tt.requestID, 40), job.Name)
			assert.Empty(t, validation.IsDNS1123Label(job.Name), "job name %q", job.Name)
			assert.Equal(t, run.ID(tt.requestID, "", ""), job.Labels[kube.RunIDLabel], "run id label")
			assert.Empty(t, validation.IsValidLabelValue(job.Labels[kube.RunIDLabel]), "run id label %q", job.Labels[kube.RunIDLabel])
		})
	}
	assert.Len(t, jobs.Items, len(tests)-1, "jobs: one per accepted request")

	configMaps, _ := runsRunObjects(ctx, t, receiver.Namespace)
	assert.Empty(t, configMaps, "configmaps left behind")
}

func TestLimitsNonUTF8Output(t *testing.T) {
	t.Parallel()
	receiver := runsStartReceiver(t, nil)
	raw := []byte("ok \xff\xfe end")

	result := runsRequireResult(t, SendEvent(t, receiver.URL, "not-utf8", run.Request{
		Language: "python",
		Script:   `import sys` + "\n" + `sys.stdout.buffer.write(b'ok \xff\xfe end')` + "\n",
	}))

	assert.Equal(t, run.StatusSucceeded, result.Status, "status; message: %s", result.Message)
	assert.Equal(t, "ok \uFFFD end", result.Output, "output")
	decoded, err := base64.StdEncoding.DecodeString(result.OutputBase64)
	require.NoError(t, err, "decoding outputBase64 %q", result.OutputBase64)
	assert.Equal(t, raw, decoded, "outputBase64")
}

func TestLimitsOutputBeforeKill(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		language string
		script   string
	}{
		{
			name:     "python write then sleep",
			language: "python",
			script:   "import sys, time\nsys.stdout.write('partial')\ntime.sleep(60)\n",
		},
		{
			name:     "node write then busy loop",
			language: "node",
			script:   "process.stdout.write('partial');\nwhile (true) {}\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			receiver := runsStartReceiver(t, nil)

			result := runsRequireResult(t, SendEvent(t, receiver.URL, "killed", run.Request{
				Language:       tt.language,
				Script:         tt.script,
				TimeoutSeconds: run.IntPtr(3),
			}))

			assert.Equal(t, run.StatusTimedOut, result.Status, "status; message: %s", result.Message)
			assert.Equal(t, "partial", result.Output, "output")
			assert.False(t, result.OutputTruncated, "outputTruncated")
		})
	}
}
