//go:build e2e

package e2e

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/scriptrun/scriptrun/function"
	"github.com/scriptrun/scriptrun/function/kube"
	"github.com/scriptrun/scriptrun/function/run"
	"github.com/scriptrun/scriptrun/function/runtimes"
)

// These tests send run.requested events over HTTP on loopback to a receiver
// served in the test process. The receiver runs each script as a Job in the
// test's own namespace, with the deployment's receiver Role and nothing more.

// runsEventSource is the CloudEvents source that PostEvent sets.
const runsEventSource = "/scriptrun/e2e/tests"

// runsReceiver is a receiver under test and the namespace of its runs.
type runsReceiver struct {
	*TestReceiver
	Namespace string
	Config    function.Config
}

// runsStartReceiver creates a namespace that enforces the restricted Pod
// Security profile, grants the deployment's receiver Role in it, and starts a
// receiver there. configure, when not nil, changes the configuration first.
func runsStartReceiver(t *testing.T, configure func(*function.Config)) runsReceiver {
	t.Helper()
	namespace := NewNamespace(t, restrictedNamespace)
	cfg := ReceiverConfig(namespace, GrantReceiver(t, namespace, nil))
	if configure != nil {
		configure(&cfg)
	}
	return runsReceiver{TestReceiver: StartReceiver(t, cfg), Namespace: namespace, Config: cfg}
}

// runsRequireResult checks that the receiver replied with a run.completed
// event (HTTP 200) and returns its data.
func runsRequireResult(t *testing.T, reply Reply) run.Result {
	t.Helper()
	require.Equal(t, http.StatusOK, reply.Status, "HTTP status; body: %s", reply.Body)
	return reply.Result
}

// runsRunObjects lists the names of the ConfigMaps and Jobs in namespace
// that carry the runs' app label.
func runsRunObjects(ctx context.Context, t *testing.T, namespace string) (configMaps, jobs []string) {
	t.Helper()
	selector := metav1.ListOptions{LabelSelector: kube.AppLabel + "=" + kube.AppValue}

	configMapList, err := cluster.Client.CoreV1().ConfigMaps(namespace).List(ctx, selector)
	require.NoError(t, err, "listing configmaps in %s", namespace)
	for _, configMap := range configMapList.Items {
		configMaps = append(configMaps, configMap.Name)
	}

	jobList, err := cluster.Client.BatchV1().Jobs(namespace).List(ctx, selector)
	require.NoError(t, err, "listing jobs in %s", namespace)
	for _, job := range jobList.Items {
		jobs = append(jobs, job.Name)
	}
	return configMaps, jobs
}

// runsJobsOfRun lists the Jobs labelled with runID.
func runsJobsOfRun(ctx context.Context, t *testing.T, namespace, runID string) []batchv1.Job {
	t.Helper()
	jobs, err := cluster.Client.BatchV1().Jobs(namespace).List(ctx, metav1.ListOptions{
		LabelSelector: kube.RunIDLabel + "=" + runID,
	})
	require.NoError(t, err, "listing jobs of run %s in %s", runID, namespace)
	return jobs.Items
}

// runsWaitForDeletion watches the object called name, of the given resource
// in the API group that client serves, until it is deleted, and returns at
// once when it does not exist. It fails the test when ctx ends first.
func runsWaitForDeletion(ctx context.Context, t *testing.T, client cache.Getter, resource string,
	object runtime.Object, namespace, name string) {
	t.Helper()
	listWatch := cache.NewListWatchFromClient(client, resource, namespace,
		fields.OneTermEqualSelector("metadata.name", name))
	_, err := watchtools.UntilWithSync(ctx, listWatch, object,
		func(store cache.Store) (bool, error) { return len(store.List()) == 0, nil },
		func(event watch.Event) (bool, error) { return event.Type == watch.Deleted, nil })
	require.NoError(t, err, "waiting for %s %s/%s to be deleted", resource, namespace, name)
}

// runsExpectation is what one run's reply should contain.
type runsExpectation struct {
	status   run.Status
	exitCode *int
	output   string
	// outputPrefix, when set, replaces the check of the whole output.
	outputPrefix string
	// messageContains lists substrings of the reply's message.
	messageContains []string
}

func runsCheckResult(t *testing.T, want runsExpectation, got run.Result) {
	t.Helper()
	assert.Equal(t, want.status, got.Status, "status; message: %s; output: %q", got.Message, got.Output)
	if want.exitCode == nil {
		assert.Nil(t, got.ExitCode, "exit code")
	} else if assert.NotNil(t, got.ExitCode, "exit code") {
		assert.Equal(t, *want.exitCode, *got.ExitCode, "exit code")
	}
	if want.outputPrefix != "" {
		assert.True(t, strings.HasPrefix(got.Output, want.outputPrefix), "output %q, want the prefix %q", got.Output, want.outputPrefix)
	} else {
		assert.Equal(t, want.output, got.Output, "output")
	}
	for _, text := range want.messageContains {
		assert.Contains(t, got.Message, text, "message")
	}
}

// TestRunsOutcomes runs one script per case, each through its own receiver
// and namespace, and checks the reply's status, exit code and output.
func TestRunsOutcomes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		request run.Request
		want    runsExpectation
	}{
		{
			name: "python succeeds",
			request: run.Request{
				Language: "python",
				Script: `import sys
numbers = [int(word) for word in sys.stdin.read().split()]
print("sum", sum(numbers))
print("args", sys.argv[1:])
`,
				Stdin: "1 2 3\n4",
				Args:  []string{"--name", "two words"},
			},
			want: runsExpectation{
				status:   run.StatusSucceeded,
				exitCode: run.IntPtr(0),
				output:   "sum 10\nargs ['--name', 'two words']\n",
			},
		},
		{
			name: "node succeeds",
			request: run.Request{
				Language: "node",
				Script: `const input = require("fs").readFileSync(0, "utf8");
console.log("lines", input.split("\n").length);
console.log("args", JSON.stringify(process.argv.slice(2)));
`,
				Stdin: "a\nb\nc",
				Args:  []string{"x", "y z"},
			},
			want: runsExpectation{
				status:   run.StatusSucceeded,
				exitCode: run.IntPtr(0),
				output:   "lines 3\nargs [\"x\",\"y z\"]\n",
			},
		},
		{
			// stdout and stderr reach the log through separate pipes, so
			// only the order within each stream is kept.
			name: "stderr is output",
			request: run.Request{
				Language: "node",
				Script:   "console.error('first');\nconsole.error('second');\n",
			},
			want: runsExpectation{
				status:   run.StatusSucceeded,
				exitCode: run.IntPtr(0),
				output:   "first\nsecond\n",
			},
		},
		{
			name: "exit code 3",
			request: run.Request{
				Language: "python",
				Script:   "import sys\nprint('before exit')\nsys.exit(3)\n",
			},
			want: runsExpectation{
				status:          run.StatusFailed,
				exitCode:        run.IntPtr(3),
				output:          "before exit\n",
				messageContains: []string{"exited with code 3"},
			},
		},
		{
			name: "memory over the 128Mi limit",
			request: run.Request{
				Language: "python",
				// Each chunk is filled with ones, so its pages are touched
				// and count against the memory limit.
				Script: `chunks = []
while True:
    chunks.append(b"\x01" * (16 << 20))
    print("allocated", 16 * len(chunks), "MiB", flush=True)
`,
				TimeoutSeconds: run.IntPtr(60),
			},
			want: runsExpectation{
				status:   run.StatusOOMKilled,
				exitCode: run.IntPtr(137),
				// Where the kernel stops the script depends on the
				// interpreter's own memory and the page cache.
				outputPrefix:    "allocated 16 MiB\nallocated 32 MiB\n",
				messageContains: []string{"memory limit of 128Mi"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			receiver := runsStartReceiver(t, nil)

			result := runsRequireResult(t, SendEvent(t, receiver.URL, "outcome", tt.request))
			t.Logf("status %s, message %q, output %q", result.Status, result.Message, result.Output)

			runsCheckResult(t, tt.want, result)
			assert.Empty(t, result.OutputBase64, "outputBase64")
			assert.False(t, result.OutputTruncated, "outputTruncated")
		})
	}
}

func TestRunsTimeout(t *testing.T) {
	t.Parallel()
	receiver := runsStartReceiver(t, nil)
	const timeoutSeconds = 5

	reply := SendEvent(t, receiver.URL, "endless-loop", run.Request{
		Language:       "python",
		Script:         "print('looping')\nwhile True:\n    pass\n",
		TimeoutSeconds: run.IntPtr(timeoutSeconds),
	})

	t.Logf("the reply to a run limited to %d s arrived after %.1f s", timeoutSeconds, reply.Elapsed.Seconds())
	result := runsRequireResult(t, reply)
	runsCheckResult(t, runsExpectation{
		status:          run.StatusTimedOut,
		exitCode:        run.IntPtr(137),
		output:          "looping\n",
		messageContains: []string{"time limit of 5s"},
	}, result)
	assert.Less(t, reply.Elapsed, (timeoutSeconds+15)*time.Second, "time to the reply")
}

func TestRunsOutputCap(t *testing.T) {
	t.Parallel()
	const maxOutputBytes = 4096
	receiver := runsStartReceiver(t, func(cfg *function.Config) { cfg.MaxOutputBytes = maxOutputBytes })

	result := runsRequireResult(t, SendEvent(t, receiver.URL, "one-mebibyte", run.Request{
		Language: "python",
		Script:   "import sys\nsys.stdout.write('x' * (1 << 20))\n",
	}))

	assert.Equal(t, run.StatusSucceeded, result.Status, "status; message: %s", result.Message)
	assert.True(t, result.OutputTruncated, "outputTruncated")
	assert.Len(t, result.Output, maxOutputBytes, "output length")
	assert.Equal(t, strings.Repeat("x", maxOutputBytes), result.Output, "output")
}

// runsOwnerObservation is a ConfigMap's owner references as a watch saw them,
// and the UID of the Job of that name at that moment.
type runsOwnerObservation struct {
	owners []metav1.OwnerReference
	jobUID types.UID
}

func TestRunsConfigMapOwnedByJob(t *testing.T) {
	t.Parallel()
	receiver := runsStartReceiver(t, nil)
	ctx := testContext(t, 2*time.Minute)
	configMaps := cluster.Client.CoreV1().ConfigMaps(receiver.Namespace)

	// A retry watcher resumes from the last resource version when the API
	// server ends the watch with an error, which it does under load.
	list, err := configMaps.List(ctx, metav1.ListOptions{LabelSelector: kube.RunIDLabel})
	require.NoError(t, err, "listing configmaps")
	watcher, err := watchtools.NewRetryWatcherWithContext(ctx, list.ResourceVersion, &cache.ListWatch{
		WatchFuncWithContext: func(ctx context.Context, options metav1.ListOptions) (watch.Interface, error) {
			options.LabelSelector = kube.RunIDLabel
			return configMaps.Watch(ctx, options)
		},
	})
	require.NoError(t, err, "watching configmaps")
	defer watcher.Stop()

	replies := make(chan Reply, 1)
	sendErrors := make(chan error, 1)
	sentAt := time.Now()
	go func() {
		reply, err := PostEvent(ctx, receiver.URL, "owned", run.Request{
			Language: "python",
			Script:   "import time\ntime.sleep(3)\nprint('slept')\n",
		})
		if err != nil {
			sendErrors <- err
			return
		}
		replies <- reply
	}()

	// Watch until both the reply and the ConfigMap's deletion have arrived:
	// the receiver deletes the ConfigMap before it replies, but the watch
	// may report that later.
	var (
		reply           *Reply
		configMapName   string
		observedOwners  []runsOwnerObservation
		deletedAt       time.Time
		replyReceivedAt time.Time
	)
	for reply == nil || deletedAt.IsZero() {
		select {
		case event, ok := <-watcher.ResultChan():
			require.True(t, ok, "the configmap watch ended early")
			configMap, isConfigMap := event.Object.(*corev1.ConfigMap)
			require.True(t, isConfigMap, "watch event %s with %T", event.Type, event.Object)
			configMapName = configMap.Name
			if event.Type == watch.Deleted {
				deletedAt = time.Now()
				continue
			}
			if len(configMap.OwnerReferences) > 0 {
				observation := runsOwnerObservation{owners: configMap.OwnerReferences}
				job, err := cluster.Client.BatchV1().Jobs(receiver.Namespace).
					Get(ctx, configMap.OwnerReferences[0].Name, metav1.GetOptions{})
				require.NoError(t, err, "getting the job that owns configmap %s", configMap.Name)
				observation.jobUID = job.UID
				observedOwners = append(observedOwners, observation)
			}
		case got := <-replies:
			reply, replyReceivedAt = &got, time.Now()
		case err := <-sendErrors:
			require.NoError(t, err, "sending the event")
		case <-ctx.Done():
			require.FailNow(t, "timed out", "reply received: %t; configmap deleted: %t", reply != nil, !deletedAt.IsZero())
		}
	}
	t.Logf("after the event was sent: the reply arrived after %.3f s, the watch saw configmap %s deleted after %.3f s",
		replyReceivedAt.Sub(sentAt).Seconds(), configMapName, deletedAt.Sub(sentAt).Seconds())

	result := runsRequireResult(t, *reply)
	assert.Equal(t, run.StatusSucceeded, result.Status, "status; message: %s", result.Message)
	assert.Equal(t, "slept\n", result.Output)

	runID := run.ID("", runsEventSource, "owned")
	jobs := runsJobsOfRun(ctx, t, receiver.Namespace, runID)
	require.Len(t, jobs, 1, "jobs of run %s", runID)
	job := jobs[0]
	assert.Equal(t, kube.ConfigMapName(runID), configMapName, "configmap name")

	require.NotEmpty(t, observedOwners, "the configmap never had an owner while the job existed")
	for _, observation := range observedOwners {
		require.Len(t, observation.owners, 1, "owner references")
		owner := observation.owners[0]
		assert.Equal(t, "batch/v1", owner.APIVersion, "owner apiVersion")
		assert.Equal(t, "Job", owner.Kind, "owner kind")
		assert.Equal(t, job.Name, owner.Name, "owner name")
		assert.Equal(t, job.UID, owner.UID, "owner UID")
		assert.Equal(t, job.UID, observation.jobUID, "UID of the job when the owner was seen")
	}

	_, err = configMaps.Get(ctx, configMapName, metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err), "getting configmap %s after the reply: want NotFound, got %v", configMapName, err)
}

func TestRunsJobTTL(t *testing.T) {
	t.Parallel()
	const ttlSeconds = 5
	receiver := runsStartReceiver(t, func(cfg *function.Config) { cfg.JobTTLSeconds = ttlSeconds })
	ctx := testContext(t, 2*time.Minute)

	result := runsRequireResult(t, SendEvent(t, receiver.URL, "short-ttl", run.Request{
		Language: "python",
		Script:   "print('done')\n",
	}))
	replied := time.Now()
	require.Equal(t, run.StatusSucceeded, result.Status, "status; message: %s", result.Message)

	runID := run.ID("", runsEventSource, "short-ttl")
	jobs := runsJobsOfRun(ctx, t, receiver.Namespace, runID)
	require.Len(t, jobs, 1, "jobs of run %s", runID)
	job := jobs[0]
	require.NotNil(t, job.Spec.TTLSecondsAfterFinished, "ttlSecondsAfterFinished")
	assert.Equal(t, int32(ttlSeconds), *job.Spec.TTLSecondsAfterFinished, "ttlSecondsAfterFinished")
	pods := JobPods(ctx, t, receiver.Namespace, job.Name)
	require.Len(t, pods, 1, "pods of job %s", job.Name)

	// The TTL controller deletes the Job in the foreground, so its pod goes
	// first and the Job last.
	deadline, cancel := context.WithTimeout(ctx, (ttlSeconds+30)*time.Second)
	defer cancel()
	runsWaitForDeletion(deadline, t, cluster.Client.CoreV1().RESTClient(), "pods", &corev1.Pod{},
		receiver.Namespace, pods[0].Name)
	podGone := time.Since(replied)
	runsWaitForDeletion(deadline, t, cluster.Client.BatchV1().RESTClient(), "jobs", &batchv1.Job{},
		receiver.Namespace, job.Name)
	jobGone := time.Since(replied)
	t.Logf("with a TTL of %d s, the pod was gone %.1f s and the job %.1f s after the reply",
		ttlSeconds, podGone.Seconds(), jobGone.Seconds())

	assert.Empty(t, JobPods(ctx, t, receiver.Namespace, job.Name), "pods of the deleted job")
}

func TestRunsConcurrentDuplicates(t *testing.T) {
	t.Parallel()
	receiver := runsStartReceiver(t, nil)
	ctx := testContext(t, 2*time.Minute)
	const copies = 10
	const eventID = "sent-ten-times"

	type sent struct {
		reply Reply
		err   error
	}
	results := make(chan sent, copies)
	request := run.Request{Language: "python", Script: "import time\ntime.sleep(1)\nprint('once')\n"}
	for range copies {
		go func() {
			reply, err := PostEvent(ctx, receiver.URL, eventID, request)
			results <- sent{reply, err}
		}()
	}
	var replies []Reply
	for range copies {
		got := <-results
		require.NoError(t, got.err, "sending a copy of the event")
		replies = append(replies, got.reply)
	}

	first := runsRequireResult(t, replies[0])
	assert.Equal(t, run.StatusSucceeded, first.Status, "status; message: %s", first.Message)
	assert.Equal(t, "once\n", first.Output)
	runID := run.ID("", runsEventSource, eventID)
	assert.Equal(t, runID+"-completed", replies[0].Header.Get("Ce-Id"), "Ce-Id")
	for i, reply := range replies[1:] {
		assert.Equal(t, replies[0].Status, reply.Status, "HTTP status of reply %d", i+2)
		assert.Equal(t, replies[0].Body, reply.Body, "body of reply %d", i+2)
		assert.Equal(t, replies[0].Header.Get("Ce-Id"), reply.Header.Get("Ce-Id"), "Ce-Id of reply %d", i+2)
	}

	assert.Len(t, runsJobsOfRun(ctx, t, receiver.Namespace, runID), 1, "jobs of run %s", runID)
}

// runsWaitForQuotaStatus waits until the quota controller has filled in the
// quota's status. Until then the API server rejects every object that the
// quota counts with "status unknown for quota", not with "exceeded quota".
func runsWaitForQuotaStatus(ctx context.Context, t *testing.T, namespace, name string, resourceName corev1.ResourceName) {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true,
		func(ctx context.Context) (bool, error) {
			quota, err := cluster.Client.CoreV1().ResourceQuotas(namespace).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			_, hard := quota.Status.Hard[resourceName]
			_, used := quota.Status.Used[resourceName]
			return hard && used, nil
		})
	require.NoError(t, err, "waiting for the status of resourcequota %s/%s", namespace, name)
}

func TestRunsJobQuotaExceeded(t *testing.T) {
	t.Parallel()
	receiver := runsStartReceiver(t, nil)
	ctx := testContext(t, time.Minute)
	const quotaName = "no-jobs"
	jobCount := corev1.ResourceName("count/jobs.batch")

	_, err := cluster.Client.CoreV1().ResourceQuotas(receiver.Namespace).Create(ctx, &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Name: quotaName},
		Spec:       corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{jobCount: resource.MustParse("0")}},
	}, metav1.CreateOptions{})
	require.NoError(t, err, "creating resourcequota %s", quotaName)
	runsWaitForQuotaStatus(ctx, t, receiver.Namespace, quotaName, jobCount)

	reply := SendEvent(t, receiver.URL, "over-quota", run.Request{Language: "python", Script: "print(1)\n"})

	t.Logf("response after %.1f s: HTTP %d: %s", reply.Elapsed.Seconds(), reply.Status, reply.Body)
	assert.Equal(t, http.StatusTooManyRequests, reply.Status, "HTTP status")
	assert.NotEmpty(t, reply.Header.Get("Retry-After"), "Retry-After")
	assert.Contains(t, reply.Body, "exceeded quota: "+quotaName, "body")
	configMaps, jobs := runsRunObjects(ctx, t, receiver.Namespace)
	assert.Empty(t, configMaps, "configmaps left behind")
	assert.Empty(t, jobs, "jobs")
}

// runsJobTemplate is the project's Job template, which the tests edit.
const runsJobTemplate = "../../templates/job_template.yaml"

// The API server rejects a Job whose container requests more memory than
// its limit. The Job template passes the receiver's own checks, which look at
// structure, not at values.
func TestRunsJobInvalid(t *testing.T) {
	t.Parallel()
	original, err := os.ReadFile(runsJobTemplate)
	require.NoError(t, err)
	const requests = "requests:\n              memory: 32Mi"
	require.Equal(t, 1, strings.Count(string(original), requests), "memory request in %s", runsJobTemplate)
	template := strings.Replace(string(original), requests, "requests:\n              memory: 256Mi", 1)
	path := filepath.Join(t.TempDir(), "job_template.yaml")
	require.NoError(t, os.WriteFile(path, []byte(template), 0o600))
	receiver := runsStartReceiver(t, func(cfg *function.Config) { cfg.JobTemplate = path })
	ctx := testContext(t, time.Minute)

	reply := SendEvent(t, receiver.URL, "invalid-job", run.Request{Language: "python", Script: "print(1)\n"})

	t.Logf("response after %.1f s: HTTP %d: %s", reply.Elapsed.Seconds(), reply.Status, reply.Body)
	result := runsRequireResult(t, reply)
	runsCheckResult(t, runsExpectation{
		status: run.StatusError,
		messageContains: []string{
			"the API server rejected the run's job",
			"spec.template.spec.containers[0].resources.requests",
			"must be less than or equal to memory limit",
		},
	}, result)
	configMaps, jobs := runsRunObjects(ctx, t, receiver.Namespace)
	assert.Empty(t, configMaps, "configmaps left behind")
	assert.Empty(t, jobs, "jobs left behind")
}

// A runtime image with trailing whitespace passes runtimes.Load, and the API
// server accepts the Job too, because Kubernetes 1.34 checks image whitespace
// in pods only, not in pod templates. The API server then rejects every pod
// of the Job as Invalid.
// NOTE: the receiver replies only at the Job's deadline, with a message that
// points at ResourceQuota, and leaves the Job in place. The test accepts any
// response that names the cause and leaves no Job: the table rejected when
// loaded, HTTP 500 for a misconfiguration, or a reply with status error.
func TestRunsImageWithWhitespace(t *testing.T) {
	t.Parallel()
	table := `runtimes:
  python:
    image: "` + cluster.PythonImage + `"
    command: ["python3", "-u"]
    fileExtension: py
  padded:
    image: "` + cluster.PythonImage + ` "
    command: ["python3", "-u"]
    fileExtension: py
`
	path := filepath.Join(t.TempDir(), "runtimes.yaml")
	require.NoError(t, os.WriteFile(path, []byte(table), 0o600))
	if _, err := runtimes.Load(path); err != nil {
		t.Logf("the runtime table is rejected when loaded: %v", err)
		assert.Contains(t, err.Error(), "padded", "error")
		return
	}
	const timeoutSeconds = 5
	receiver := runsStartReceiver(t, func(cfg *function.Config) { cfg.Runtimes = path })
	ctx := testContext(t, 2*time.Minute)

	reply := SendEvent(t, receiver.URL, "image-with-space", run.Request{
		Language:       "padded",
		Script:         "print(1)\n",
		TimeoutSeconds: run.IntPtr(timeoutSeconds),
	})

	t.Logf("response after %.1f s: HTTP %d: %s", reply.Elapsed.Seconds(), reply.Status, reply.Body)
	if reply.Status == http.StatusOK {
		assert.Equal(t, run.StatusError, reply.Result.Status, "status")
	} else {
		assert.Equal(t, http.StatusInternalServerError, reply.Status, "HTTP status")
	}
	assert.Contains(t, reply.Body, "whitespace", "the response names the cause")
	_, jobs := runsRunObjects(ctx, t, receiver.Namespace)
	assert.Empty(t, jobs, "jobs left behind")
}

// The LimitRanger admission plugin checks pods, not Jobs: the API server
// accepts the Job, and then forbids every pod that the Job controller tries
// to create. The Job fails at its own deadline, the timeout plus half of
// SCRIPTRUN_WAIT_MARGIN_SECONDS, before the receiver's deadline.
func TestRunsPodForbiddenByLimitRange(t *testing.T) {
	t.Parallel()
	const timeoutSeconds = 5
	const waitMarginSeconds = 20
	receiver := runsStartReceiver(t, func(cfg *function.Config) { cfg.WaitMarginSeconds = waitMarginSeconds })
	ctx := testContext(t, 2*time.Minute)

	_, err := cluster.Client.CoreV1().LimitRanges(receiver.Namespace).Create(ctx, &corev1.LimitRange{
		ObjectMeta: metav1.ObjectMeta{Name: "small-containers"},
		Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{
			Type: corev1.LimitTypeContainer,
			Max:  corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
		}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err, "creating the limitrange")

	reply := SendEvent(t, receiver.URL, "pod-forbidden", run.Request{
		Language:       "python",
		Script:         "print(1)\n",
		TimeoutSeconds: run.IntPtr(timeoutSeconds),
	})

	t.Logf("response after %.1f s: HTTP %d: %s", reply.Elapsed.Seconds(), reply.Status, reply.Body)
	result := runsRequireResult(t, reply)
	runsCheckResult(t, runsExpectation{
		status:          run.StatusError,
		messageContains: []string{"no pod ever ran for the job", "DeadlineExceeded", "ResourceQuota", "events"},
	}, result)
	assert.Less(t, reply.Elapsed, (timeoutSeconds+waitMarginSeconds)*time.Second,
		"time to the reply, against the receiver's deadline")

	// The Job's events show the real cause, which the reply points to.
	runID := run.ID("", runsEventSource, "pod-forbidden")
	events, err := cluster.Client.CoreV1().Events(receiver.Namespace).List(ctx, metav1.ListOptions{
		FieldSelector: fields.Set{"involvedObject.kind": "Job", "involvedObject.name": kube.JobName(runID)}.String(),
	})
	require.NoError(t, err, "listing the job's events")
	var failedCreate []string
	for _, event := range events.Items {
		if event.Reason == "FailedCreate" {
			failedCreate = append(failedCreate, event.Message)
		}
	}
	require.NotEmpty(t, failedCreate, "FailedCreate events of job %s", kube.JobName(runID))
	assert.Contains(t, failedCreate[0], "maximum memory usage per Container is 64Mi", "FailedCreate event")
}
