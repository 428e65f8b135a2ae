package kube

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"knative.dev/pkg/logging"
	logtesting "knative.dev/pkg/logging/testing"

	"github.com/scriptrun/scriptrun/function/run"
)

const runsNamespace = "runs"

var (
	jobsResource       = batchv1.SchemeGroupVersion.WithResource("jobs")
	podsResource       = corev1.SchemeGroupVersion.WithResource("pods")
	configMapsResource = corev1.SchemeGroupVersion.WithResource("configmaps")
)

// testCluster is a fake API server with a started Tracker and a Runner on it.
type testCluster struct {
	client  *fake.Clientset
	tracker *Tracker
	runner  *Runner
}

// newTestCluster starts a Tracker on a fake clientset holding objects and
// returns once both informers have listed and are watching. At the end of
// the test it checks that no wait is left registered.
func newTestCluster(t *testing.T, opts Options, objects ...runtime.Object) *testCluster {
	t.Helper()
	client := fake.NewClientset(objects...)

	// The fake watch has no resource versions, so an object created between
	// an informer's list and its watch would never reach the cache. Report
	// each watch so the test can start once both are open.
	watching := make(chan string, 2)
	client.PrependWatchReactor("*", func(action k8stesting.Action) (bool, watch.Interface, error) {
		w, err := client.Tracker().Watch(action.GetResource(), action.GetNamespace())
		if err != nil {
			return true, nil, err
		}
		select {
		case watching <- action.GetResource().Resource:
		default: // A rewatch after the first two needs no report.
		}
		return true, w, nil
	})

	tracker, err := NewTracker(client, runsNamespace)
	require.NoError(t, err)
	// The informers may log after the test ends, so they get no test logger.
	ctx, cancel := context.WithCancel(logging.WithLogger(context.Background(), zap.NewNop().Sugar()))
	t.Cleanup(cancel)
	tracker.Start(ctx)

	syncCtx, syncCancel := context.WithTimeout(ctx, 10*time.Second)
	defer syncCancel()
	require.True(t, tracker.WaitForSync(syncCtx), "informers did not sync")
	for range 2 {
		select {
		case <-watching:
		case <-syncCtx.Done():
			require.FailNow(t, "informers did not start watching")
		}
	}
	t.Cleanup(func() { assert.Zero(t, tracker.Waiting(), "a wait is still registered after Run returned") })

	opts.Namespace = runsNamespace
	if opts.Template == nil {
		opts.Template = builtInTemplate(t)
	}
	if opts.JobTTL == 0 {
		opts.JobTTL = 5 * time.Minute
	}
	if opts.JobDeadlineMargin == 0 {
		opts.JobDeadlineMargin = 30 * time.Second
	}
	if opts.MaxOutputBytes == 0 {
		opts.MaxOutputBytes = 1 << 20
	}
	return &testCluster{client: client, tracker: tracker, runner: NewRunner(client, tracker, opts)}
}

// runContext returns a context with a test logger and a deadline that keeps
// a broken test from hanging.
func runContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(logtesting.TestContextWithLogger(t), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// scriptExits makes the fake API server behave like a cluster for each Job
// created: it stores the Job with a UID and a pod whose script container has
// already exited with exitCode.
func (c *testCluster) scriptExits(exitCode int32) {
	c.client.PrependReactor("create", "jobs", func(action k8stesting.Action) (bool, runtime.Object, error) {
		job := action.(k8stesting.CreateAction).GetObject().(*batchv1.Job).DeepCopy()
		job.UID = types.UID("uid-" + job.Name)
		// The object tracker has its own lock, so the reactor may use it
		// while the fake clientset holds its own.
		if err := c.client.Tracker().Create(jobsResource, job, job.Namespace); err != nil {
			return true, nil, err
		}
		if err := c.client.Tracker().Create(podsResource, exitedPod(job, exitCode), job.Namespace); err != nil {
			return true, nil, err
		}
		return true, job, nil
	})
}

// failOnce makes the first verb on resource fail with err.
func (c *testCluster) failOnce(verb, resource string, err error) {
	failed := false
	c.client.PrependReactor(verb, resource, func(k8stesting.Action) (bool, runtime.Object, error) {
		if failed {
			return false, nil, nil
		}
		failed = true
		return true, nil, err
	})
}

// recordDeletedConfigMaps keeps a copy of each ConfigMap as it was just
// before the fake API server deleted it.
func (c *testCluster) recordDeletedConfigMaps() *[]*corev1.ConfigMap {
	var deleted []*corev1.ConfigMap
	c.client.PrependReactor("delete", "configmaps", func(action k8stesting.Action) (bool, runtime.Object, error) {
		name := action.(k8stesting.DeleteAction).GetName()
		if obj, err := c.client.Tracker().Get(configMapsResource, action.GetNamespace(), name); err == nil {
			deleted = append(deleted, obj.(*corev1.ConfigMap))
		}
		return false, nil, nil
	})
	return &deleted
}

func (c *testCluster) jobs(t *testing.T) []batchv1.Job {
	t.Helper()
	list, err := c.client.BatchV1().Jobs(runsNamespace).List(context.Background(), metav1.ListOptions{})
	require.NoError(t, err)
	return list.Items
}

// configMap returns the run's ConfigMap, or nil when there is none.
func (c *testCluster) configMap(t *testing.T, spec run.Spec) *corev1.ConfigMap {
	t.Helper()
	cm, err := c.client.CoreV1().ConfigMaps(runsNamespace).Get(context.Background(), ConfigMapName(spec.ID), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	require.NoError(t, err)
	return cm
}

// exitedPod returns job's pod with the script container terminated with
// exitCode and the pod in its final phase, as the kubelet reports it.
func exitedPod(job *batchv1.Job, exitCode int32) *corev1.Pod {
	pod := runningPod(job)
	setExited(pod, exitCode)
	return pod
}

func runningPod(job *batchv1.Job) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:      job.Name + "-x7k2p",
			Namespace: job.Namespace,
			Labels:    job.Spec.Template.Labels,
		},
		Spec: job.Spec.Template.Spec,
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning,
			ContainerStatuses: []corev1.ContainerStatus{{
				Name:  ContainerName,
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(scriptStart)}},
			}},
		},
	}
}

func setExited(pod *corev1.Pod, exitCode int32) {
	pod.Status.Phase = corev1.PodSucceeded
	if exitCode != 0 {
		pod.Status.Phase = corev1.PodFailed
	}
	pod.Status.ContainerStatuses[0].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ExitCode:   exitCode,
		StartedAt:  metav1.NewTime(scriptStart),
		FinishedAt: metav1.NewTime(scriptEnd),
	}}
}

// exitWhenWaiting lets pod's script exit with exitCode once a Run waits on
// it, and reports on the returned channel whether that worked.
func (c *testCluster) exitWhenWaiting(ctx context.Context, pod *corev1.Pod, exitCode int32) <-chan error {
	done := make(chan error, 1)
	go func() {
		err := wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
			return c.tracker.Waiting() == 1, nil
		})
		if err != nil {
			done <- fmt.Errorf("no run waited on pod %s: %w", pod.Name, err)
			return
		}
		exited := pod.DeepCopy()
		setExited(exited, exitCode)
		_, err = c.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, exited, metav1.UpdateOptions{})
		done <- err
	}()
	return done
}

func TestRunReportsScriptOutcome(t *testing.T) {
	tests := []struct {
		name           string
		exitCode       int32
		maxOutputBytes int
		wantStatus     run.Status
		wantOutput     string
		wantTruncated  bool
		wantMessage    string
	}{
		{name: "script succeeds", exitCode: 0, wantStatus: run.StatusSucceeded, wantOutput: "fake logs"},
		{name: "script fails", exitCode: 3, wantStatus: run.StatusFailed, wantOutput: "fake logs", wantMessage: "the script exited with code 3"},
		{name: "output over the cap", exitCode: 0, maxOutputBytes: 4, wantStatus: run.StatusSucceeded, wantOutput: "fake", wantTruncated: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestCluster(t, Options{MaxOutputBytes: tt.maxOutputBytes})
			c.scriptExits(tt.exitCode)
			deleted := c.recordDeletedConfigMaps()
			spec := testSpec(t, run.Request{Language: "python", Script: "print('hi')", Stdin: "in", RequestID: "order-42"})

			got, err := c.runner.Run(runContext(t), spec)
			require.NoError(t, err)

			assert.Equal(t, tt.wantStatus, got.Status)
			assert.Equal(t, run.IntPtr(int(tt.exitCode)), got.ExitCode)
			assert.Equal(t, tt.wantOutput, got.Output)
			assert.Equal(t, tt.wantTruncated, got.OutputTruncated)
			assert.Equal(t, tt.wantMessage, got.Message)
			assert.Equal(t, "order-42", got.RequestID)
			assert.Equal(t, "python", got.Language)
			if assert.NotNil(t, got.StartedAt) && assert.NotNil(t, got.DurationMs) {
				assert.Equal(t, scriptStart, *got.StartedAt)
				assert.Equal(t, int64(1500), *got.DurationMs)
			}

			jobs := c.jobs(t)
			require.Len(t, jobs, 1)
			assert.Equal(t, JobName(spec.ID), jobs[0].Name)

			require.Len(t, *deleted, 1, "the ConfigMap must be deleted once")
			cm := (*deleted)[0]
			assert.Equal(t, map[string]string{AppLabel: AppValue, RunIDLabel: spec.ID}, cm.Labels)
			assert.Equal(t, spec.Digest, cm.Annotations[DigestAnnotation])
			assert.Equal(t, map[string]string{ScriptKey: "print('hi')", StdinKey: "in"}, cm.Data)
			assert.Equal(t, []metav1.OwnerReference{{
				APIVersion: "batch/v1", Kind: "Job", Name: jobs[0].Name, UID: jobs[0].UID,
			}}, cm.OwnerReferences)
			assert.Nil(t, c.configMap(t, spec), "the ConfigMap outlived the run")
		})
	}
}

func TestRunWakesWhenScriptExits(t *testing.T) {
	spec := testSpec(t, run.Request{Language: "python", Script: "print('hi')", RequestID: "order-42"})
	_, job, pod := existingRun(t, spec)
	c := newTestCluster(t, Options{})
	// The pod starts with the Job and runs until the Run waits on it.
	c.client.PrependReactor("create", "jobs", func(k8stesting.Action) (bool, runtime.Object, error) {
		return false, nil, c.client.Tracker().Create(podsResource, pod.DeepCopy(), runsNamespace)
	})
	ctx := runContext(t)

	exited := c.exitWhenWaiting(ctx, pod, 0)
	got, err := c.runner.Run(ctx, spec)
	require.NoError(t, <-exited)
	require.NoError(t, err)

	assert.Equal(t, run.StatusSucceeded, got.Status)
	assert.Equal(t, "fake logs", got.Output)
	jobs := c.jobs(t)
	require.Len(t, jobs, 1)
	assert.Equal(t, job.Name, jobs[0].Name)
}

// existingRun returns the ConfigMap, Job and running pod that an earlier
// delivery of spec left behind.
func existingRun(t *testing.T, spec run.Spec) (*corev1.ConfigMap, *batchv1.Job, *corev1.Pod) {
	t.Helper()
	job, err := testRunner(t, builtInTemplate(t)).newJob(spec)
	require.NoError(t, err)
	job.Namespace = runsNamespace
	job.UID = "uid-first-delivery"
	return newConfigMap(runsNamespace, spec), job, runningPod(job)
}

func TestRunRedelivery(t *testing.T) {
	spec := testSpec(t, run.Request{Language: "python", Script: "print('hi')", RequestID: "order-42"})
	cm, job, pod := existingRun(t, spec)
	c := newTestCluster(t, Options{}, cm, job, pod)
	deleted := c.recordDeletedConfigMaps()
	ctx := runContext(t)

	exited := c.exitWhenWaiting(ctx, pod, 0)
	got, err := c.runner.Run(ctx, spec)
	require.NoError(t, <-exited)
	require.NoError(t, err)

	assert.Equal(t, run.StatusSucceeded, got.Status)
	assert.Equal(t, "fake logs", got.Output)
	jobs := c.jobs(t)
	require.Len(t, jobs, 1, "a redelivery must not start a second Job")
	assert.Equal(t, job.UID, jobs[0].UID)
	require.Len(t, *deleted, 1)
	require.Len(t, (*deleted)[0].OwnerReferences, 1)
	assert.Equal(t, job.UID, (*deleted)[0].OwnerReferences[0].UID)
	assert.Nil(t, c.configMap(t, spec))
}

func TestRunRedeliveryAfterRunFinished(t *testing.T) {
	spec := testSpec(t, run.Request{Language: "python", Script: "print('hi')", RequestID: "order-42"})
	_, job, pod := existingRun(t, spec)
	setExited(pod, 3)
	// The first delivery deleted its ConfigMap when it finished.
	c := newTestCluster(t, Options{}, job, pod)

	got, err := c.runner.Run(runContext(t), spec)
	require.NoError(t, err)

	assert.Equal(t, run.StatusFailed, got.Status)
	assert.Equal(t, run.IntPtr(3), got.ExitCode)
	assert.Len(t, c.jobs(t), 1)
	assert.Nil(t, c.configMap(t, spec))
}

func TestRunRejectsReusedRequestID(t *testing.T) {
	first := testSpec(t, run.Request{Language: "python", Script: "print('first')", RequestID: "order-42"})
	second := testSpec(t, run.Request{Language: "python", Script: "print('second')", RequestID: "order-42"})
	require.Equal(t, first.ID, second.ID)
	require.NotEqual(t, first.Digest, second.Digest)
	firstConfigMap, firstJob, firstPod := existingRun(t, first)

	tests := []struct {
		name           string
		objects        []runtime.Object
		wantConfigMaps []string // scripts of the ConfigMaps left, if any
	}{
		{
			name:           "first run still running",
			objects:        []runtime.Object{firstConfigMap, firstJob, firstPod},
			wantConfigMaps: []string{"print('first')"},
		},
		{
			name:    "first run finished and its ConfigMap deleted",
			objects: []runtime.Object{firstJob, firstPod},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestCluster(t, Options{}, tt.objects...)

			got, err := c.runner.Run(runContext(t), second)
			require.NoError(t, err)

			assert.Equal(t, run.StatusRejected, got.Status)
			assert.Contains(t, got.Message, `requestId: requestId "order-42" was already used for a different request`)
			assert.Equal(t, "order-42", got.RequestID)
			assert.Nil(t, got.ExitCode)
			jobs := c.jobs(t)
			require.Len(t, jobs, 1)
			assert.Equal(t, firstJob.UID, jobs[0].UID, "the first run's Job was replaced")
			var scripts []string
			if cm := c.configMap(t, second); cm != nil {
				scripts = append(scripts, cm.Data[ScriptKey])
			}
			assert.Equal(t, tt.wantConfigMaps, scripts)
		})
	}
}

func TestRunAPIErrors(t *testing.T) {
	spec := testSpec(t, run.Request{Language: "python", Script: "print('hi')", RequestID: "order-42"})
	jobName, cmName := JobName(spec.ID), ConfigMapName(spec.ID)

	tests := []struct {
		name          string
		verb          string
		resource      string
		err           error
		wantClass     error
		wantJob       bool
		wantConfigMap bool
	}{
		{
			name: "job create gateway timeout", verb: "create", resource: "jobs",
			err:       apierrors.NewTimeoutError("request did not complete within 60s", 1),
			wantClass: run.ErrUnavailable,
		},
		{
			name: "job create server timeout", verb: "create", resource: "jobs",
			err:       apierrors.NewServerTimeout(jobsGroupResource, "create", 1),
			wantClass: run.ErrUnavailable,
		},
		{
			name: "job create quota exceeded", verb: "create", resource: "jobs",
			err:       quotaError(jobsGroupResource, jobName),
			wantClass: run.ErrThrottled,
		},
		{
			name: "job create forbidden by RBAC", verb: "create", resource: "jobs",
			err:       rbacError(jobsGroupResource, jobName),
			wantClass: run.ErrInternal,
		},
		{
			name: "configmap create quota exceeded", verb: "create", resource: "configmaps",
			err:       quotaError(configMapsGroupResource, cmName),
			wantClass: run.ErrThrottled,
		},
		{
			name: "configmap create forbidden by RBAC", verb: "create", resource: "configmaps",
			err:       rbacError(configMapsGroupResource, cmName),
			wantClass: run.ErrInternal,
		},
		{
			name: "configmap create too many requests", verb: "create", resource: "configmaps",
			err:       apierrors.NewTooManyRequests("slow down", 1),
			wantClass: run.ErrThrottled,
		},
		{
			name: "owner patch conflict", verb: "patch", resource: "configmaps",
			err:       apierrors.NewConflict(configMapsGroupResource, cmName, errors.New("the object has been modified")),
			wantClass: run.ErrUnavailable, wantJob: true, wantConfigMap: true,
		},
		{
			name: "owner patch server timeout", verb: "patch", resource: "configmaps",
			err:       apierrors.NewServerTimeout(configMapsGroupResource, "patch", 1),
			wantClass: run.ErrUnavailable, wantJob: true, wantConfigMap: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestCluster(t, Options{})
			c.scriptExits(0)
			c.failOnce(tt.verb, tt.resource, tt.err)

			got, err := c.runner.Run(runContext(t), spec)

			require.Error(t, err)
			assert.ErrorIs(t, err, tt.wantClass)
			assert.ErrorIs(t, err, tt.err)
			assert.Equal(t, run.Result{}, got)
			assert.Equal(t, tt.wantJob, len(c.jobs(t)) == 1, "job exists")
			assert.Equal(t, tt.wantConfigMap, c.configMap(t, spec) != nil, "configmap exists")
		})
	}
}

// TestRunRedeliveryAfterOwnerPatchFailed checks that the ConfigMap and Job
// left by a failed owner patch let the redelivered event finish the run.
func TestRunRedeliveryAfterOwnerPatchFailed(t *testing.T) {
	spec := testSpec(t, run.Request{Language: "python", Script: "print('hi')", RequestID: "order-42"})
	c := newTestCluster(t, Options{})
	c.scriptExits(0)
	c.failOnce("patch", "configmaps", apierrors.NewConflict(configMapsGroupResource, ConfigMapName(spec.ID), errors.New("the object has been modified")))
	_, err := c.runner.Run(runContext(t), spec)
	require.Error(t, err)

	got, err := c.runner.Run(runContext(t), spec)

	require.NoError(t, err)
	assert.Equal(t, run.StatusSucceeded, got.Status)
	assert.Len(t, c.jobs(t), 1)
	assert.Nil(t, c.configMap(t, spec))
}

func TestRunInvalidJob(t *testing.T) {
	spec := testSpec(t, run.Request{Language: "python", Script: "print('hi')", RequestID: "order-42"})
	c := newTestCluster(t, Options{})
	invalid := apierrors.NewInvalid(batchv1.SchemeGroupVersion.WithKind("Job").GroupKind(), JobName(spec.ID), field.ErrorList{
		field.Invalid(field.NewPath("spec", "template", "spec", "containers").Index(0).Child("resources", "limits", "memory"),
			"128Mi", "must be greater than or equal to memory request"),
	})
	c.failOnce("create", "jobs", invalid)

	got, err := c.runner.Run(runContext(t), spec)

	require.NoError(t, err)
	assert.Equal(t, run.StatusError, got.Status)
	assert.Contains(t, got.Message, "the API server rejected the run's job: ")
	assert.Contains(t, got.Message, "spec.template.spec.containers[0].resources.limits.memory: Invalid value")
	assert.Equal(t, "order-42", got.RequestID)
	assert.Empty(t, c.jobs(t))
	assert.Nil(t, c.configMap(t, spec), "the ConfigMap of a run that cannot start must be deleted")
}

func TestRunWaitDeadline(t *testing.T) {
	spec := testSpec(t, run.Request{Language: "python", Script: "print('hi')", RequestID: "order-42"})
	c := newTestCluster(t, Options{})
	// No reactor: the Job is stored, but no pod ever appears.
	ctx, cancel := context.WithTimeout(runContext(t), 200*time.Millisecond)
	defer cancel()

	got, err := c.runner.Run(ctx, spec)

	require.Error(t, err)
	assert.ErrorIs(t, err, run.ErrUnavailable)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, run.Result{}, got)
	jobs := c.jobs(t)
	require.Len(t, jobs, 1)
	cm := c.configMap(t, spec)
	require.NotNil(t, cm, "the ConfigMap must stay for the Job that may still run")
	require.Len(t, cm.OwnerReferences, 1)
	assert.Equal(t, jobs[0].Name, cm.OwnerReferences[0].Name)

	// The Job finishes later, and a redelivery collects its result.
	require.NoError(t, c.client.Tracker().Create(podsResource, exitedPod(&jobs[0], 0), runsNamespace))
	got, err = c.runner.Run(runContext(t), spec)
	require.NoError(t, err)
	assert.Equal(t, run.StatusSucceeded, got.Status)
	assert.Nil(t, c.configMap(t, spec))
}
