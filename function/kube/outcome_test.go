package kube

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/scriptrun/scriptrun/function/run"
)

// Times of the crafted states: the Job starts, then the script runs from
// scriptStart to scriptEnd, then the Job reaches its final condition.
var (
	jobStart    = time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)
	scriptStart = jobStart.Add(2 * time.Second)
	scriptEnd   = scriptStart.Add(1500 * time.Millisecond)
	jobEnd      = scriptEnd.Add(time.Second)
)

const testTimeout = 30 * time.Second

// testPod returns a pod of the run with the script container in state and
// the pod in phase, with the pod-level reason set when it is not empty.
func testPod(phase corev1.PodPhase, reason string, state corev1.ContainerState) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "language-test-job-r-1-x7k2p", Namespace: "runs"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: ContainerName,
			Resources: corev1.ResourceRequirements{
				Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")},
			},
		}}},
		Status: corev1.PodStatus{
			Phase:             phase,
			Reason:            reason,
			ContainerStatuses: []corev1.ContainerStatus{{Name: ContainerName, State: state}},
		},
	}
}

// pendingPod returns a pod that has no container status yet, with one
// condition that is not true.
func pendingPod(condition corev1.PodConditionType, message string) *corev1.Pod {
	pod := testPod(corev1.PodPending, "", corev1.ContainerState{})
	pod.Status.ContainerStatuses = nil
	pod.Status.Conditions = []corev1.PodCondition{{Type: condition, Status: corev1.ConditionFalse, Message: message}}
	return pod
}

func terminated(exitCode int32, reason string) corev1.ContainerState {
	return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ExitCode:   exitCode,
		Reason:     reason,
		StartedAt:  metav1.NewTime(scriptStart),
		FinishedAt: metav1.NewTime(scriptEnd),
	}}
}

func waiting(reason, message string) corev1.ContainerState {
	return corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: message}}
}

func running() corev1.ContainerState {
	return corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(scriptStart)}}
}

// testJob returns a started Job with the given pod counts and conditions.
func testJob(failed, succeeded int32, conditions ...batchv1.JobCondition) *batchv1.Job {
	start := metav1.NewTime(jobStart)
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "language-test-job-r-1", Namespace: "runs"},
		Status: batchv1.JobStatus{
			StartTime:  &start,
			Failed:     failed,
			Succeeded:  succeeded,
			Conditions: conditions,
		},
	}
}

func jobCond(kind batchv1.JobConditionType, reason, message string) batchv1.JobCondition {
	return batchv1.JobCondition{
		Type:               kind,
		Status:             corev1.ConditionTrue,
		Reason:             reason,
		Message:            message,
		LastTransitionTime: metav1.NewTime(jobEnd),
	}
}

func TestObserve(t *testing.T) {
	jobDeadline := jobCond(batchv1.JobFailed, "DeadlineExceeded", "Job was active longer than specified deadline")
	backoffLimit := jobCond(batchv1.JobFailed, "BackoffLimitExceeded", "Job has reached the specified backoff limit")
	complete := jobCond(batchv1.JobComplete, "", "")

	tests := []struct {
		name string
		job  *batchv1.Job
		pods []*corev1.Pod

		wantDone     bool
		wantStatus   run.Status
		wantExitCode *int
		wantMessage  string // a substring; empty means no message
		wantPod      bool
		wantStarted  time.Time
		wantFinished time.Time
	}{
		{
			name: "nothing created yet",
		},
		{
			name: "job without pods",
			job:  testJob(0, 0),
		},
		{
			name: "pod scheduled without container status",
			job:  testJob(0, 0),
			pods: []*corev1.Pod{pendingPod(corev1.ContainersReady, "containers with unready status: [script]")},
		},
		{
			name: "container creating",
			job:  testJob(0, 0),
			pods: []*corev1.Pod{testPod(corev1.PodPending, "", waiting("ContainerCreating", ""))},
		},
		{
			name: "script running",
			job:  testJob(0, 0),
			pods: []*corev1.Pod{testPod(corev1.PodRunning, "", running())},
		},
		{
			name:         "script exited 0",
			job:          testJob(0, 0),
			pods:         []*corev1.Pod{testPod(corev1.PodRunning, "", terminated(0, "Completed"))},
			wantDone:     true,
			wantStatus:   run.StatusSucceeded,
			wantExitCode: run.IntPtr(0),
			wantPod:      true,
			wantStarted:  scriptStart,
			wantFinished: scriptEnd,
		},
		{
			name:         "script exited 3",
			job:          testJob(0, 0),
			pods:         []*corev1.Pod{testPod(corev1.PodFailed, "", terminated(3, "Error"))},
			wantDone:     true,
			wantStatus:   run.StatusFailed,
			wantExitCode: run.IntPtr(3),
			wantMessage:  "the script exited with code 3",
			wantPod:      true,
			wantStarted:  scriptStart,
			wantFinished: scriptEnd,
		},
		{
			name:         "OOMKilled before the pod is final",
			job:          testJob(0, 0),
			pods:         []*corev1.Pod{testPod(corev1.PodRunning, "", terminated(137, "OOMKilled"))},
			wantDone:     true,
			wantStatus:   run.StatusOOMKilled,
			wantExitCode: run.IntPtr(137),
			wantMessage:  "killed at its memory limit of 128Mi",
			wantPod:      true,
			wantStarted:  scriptStart,
			wantFinished: scriptEnd,
		},
		{
			name:         "pod deadline exceeded with exit 137",
			job:          testJob(0, 0),
			pods:         []*corev1.Pod{testPod(corev1.PodFailed, "DeadlineExceeded", terminated(137, "Error"))},
			wantDone:     true,
			wantStatus:   run.StatusTimedOut,
			wantExitCode: run.IntPtr(137),
			wantMessage:  "did not finish within its time limit of 30s",
			wantPod:      true,
			wantStarted:  scriptStart,
			wantFinished: scriptEnd,
		},
		{
			name: "exit 137 before the pod is final",
			job:  testJob(0, 0),
			pods: []*corev1.Pod{testPod(corev1.PodRunning, "", terminated(137, "Error"))},
		},
		{
			name: "exit 143 before the pod is final",
			job:  testJob(0, 0),
			pods: []*corev1.Pod{testPod(corev1.PodRunning, "", terminated(143, "Error"))},
		},
		{
			name:         "exit 137 with the pod failed and no deadline",
			job:          testJob(0, 0),
			pods:         []*corev1.Pod{testPod(corev1.PodFailed, "", terminated(137, "Error"))},
			wantDone:     true,
			wantStatus:   run.StatusFailed,
			wantExitCode: run.IntPtr(137),
			wantMessage:  "the script exited with code 137",
			wantPod:      true,
			wantStarted:  scriptStart,
			wantFinished: scriptEnd,
		},
		{
			name:         "exit 137 with the job deadline exceeded",
			job:          testJob(1, 0, jobDeadline),
			pods:         []*corev1.Pod{testPod(corev1.PodRunning, "", terminated(137, "Error"))},
			wantDone:     true,
			wantStatus:   run.StatusTimedOut,
			wantExitCode: run.IntPtr(137),
			wantMessage:  "time limit of 30s",
			wantPod:      true,
			wantStarted:  scriptStart,
			wantFinished: scriptEnd,
		},
		{
			name:         "evicted pod",
			job:          testJob(1, 0, backoffLimit),
			pods:         []*corev1.Pod{evictedPod()},
			wantDone:     true,
			wantStatus:   run.StatusFailed,
			wantExitCode: run.IntPtr(137),
			wantMessage:  "the script's pod failed: Evicted: The node was low on resource: memory.",
			wantPod:      true,
			wantStarted:  scriptStart,
			wantFinished: scriptEnd,
		},
		{
			name:         "job deadline exceeded with the pod deleted",
			job:          testJob(1, 0, jobDeadline),
			wantDone:     true,
			wantStatus:   run.StatusTimedOut,
			wantMessage:  "its pod was removed, so no output was kept",
			wantStarted:  jobStart,
			wantFinished: jobEnd,
		},
		{
			name:         "job failed without a pod ever created",
			job:          testJob(0, 0, jobDeadline),
			wantDone:     true,
			wantStatus:   run.StatusError,
			wantMessage:  "no pod ever ran for the job (DeadlineExceeded: Job was active longer than specified deadline); check the namespace's ResourceQuota",
			wantStarted:  jobStart,
			wantFinished: jobEnd,
		},
		{
			name:         "job failed with the pod unschedulable",
			job:          testJob(1, 0, jobDeadline),
			pods:         []*corev1.Pod{pendingPod(corev1.PodScheduled, "0/3 nodes are available: 3 Insufficient memory.")},
			wantDone:     true,
			wantStatus:   run.StatusError,
			wantMessage:  "never started before the job failed (DeadlineExceeded): PodScheduled: 0/3 nodes are available",
			wantStarted:  jobStart,
			wantFinished: jobEnd,
		},
		{
			// The pod's final update, with the exit code, is still to come.
			name:     "job failed with the script still running in the cache",
			job:      testJob(1, 0, backoffLimit),
			pods:     []*corev1.Pod{testPod(corev1.PodRunning, "", running())},
			wantDone: false,
		},
		{
			name:        "image pull back-off",
			job:         testJob(0, 0),
			pods:        []*corev1.Pod{testPod(corev1.PodPending, "", waiting("ImagePullBackOff", `Back-off pulling image "runtime:missing"`))},
			wantDone:    true,
			wantStatus:  run.StatusError,
			wantMessage: `the script's container could not start: ImagePullBackOff: Back-off pulling image "runtime:missing"`,
		},
		{
			name:        "container config error",
			job:         testJob(0, 0),
			pods:        []*corev1.Pod{testPod(corev1.PodPending, "", waiting("CreateContainerConfigError", `configmap "user-script-r-1" not found`))},
			wantDone:    true,
			wantStatus:  run.StatusError,
			wantMessage: "CreateContainerConfigError",
		},
		{
			name:         "job complete without pods",
			job:          testJob(0, 1, complete),
			wantDone:     true,
			wantStatus:   run.StatusSucceeded,
			wantExitCode: run.IntPtr(0),
			wantStarted:  jobStart,
			wantFinished: jobEnd,
		},
		{
			name: "condition that is not true",
			job: testJob(0, 0, batchv1.JobCondition{
				Type: batchv1.JobFailed, Status: corev1.ConditionFalse, Reason: "DeadlineExceeded",
			}),
			pods: []*corev1.Pod{testPod(corev1.PodRunning, "", running())},
		},
		{
			name: "other container terminated",
			job:  testJob(0, 0),
			pods: []*corev1.Pod{withSidecar(testPod(corev1.PodRunning, "", running()), terminated(1, "Error"))},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, done := observe(tt.job, tt.pods, testTimeout)

			assert.Equal(t, tt.wantDone, done)
			assert.Equal(t, tt.wantStatus, got.status)
			assert.Equal(t, tt.wantExitCode, got.exitCode)
			if tt.wantMessage == "" {
				assert.Empty(t, got.message)
			} else {
				assert.Contains(t, got.message, tt.wantMessage)
			}
			if tt.wantPod {
				assert.Same(t, tt.pods[0], got.pod)
			} else {
				assert.Nil(t, got.pod)
			}
			assert.Equal(t, tt.wantStarted, got.started.UTC())
			assert.Equal(t, tt.wantFinished, got.finished.UTC())
		})
	}
}

func evictedPod() *corev1.Pod {
	pod := testPod(corev1.PodFailed, "Evicted", terminated(137, "Error"))
	pod.Status.Message = "The node was low on resource: memory."
	return pod
}

// withSidecar adds a container named sidecar in state to pod.
func withSidecar(pod *corev1.Pod, state corev1.ContainerState) *corev1.Pod {
	pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: "sidecar"})
	pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, corev1.ContainerStatus{Name: "sidecar", State: state})
	return pod
}
