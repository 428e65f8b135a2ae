package kube

import (
	"fmt"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/scriptrun/scriptrun/function/run"
)

// Reasons the API reports, as set by the kubelet and the Job controller.
const (
	reasonDeadlineExceeded = "DeadlineExceeded"
	reasonOOMKilled        = "OOMKilled"
)

// Container waiting reasons after which the script will never start.
var fatalWaitingReasons = map[string]bool{
	"ImagePullBackOff":           true,
	"ErrImageNeverPull":          true,
	"InvalidImageName":           true,
	"CreateContainerConfigError": true,
}

// outcome is the cluster's report on a finished run.
type outcome struct {
	status   run.Status
	exitCode *int
	message  string
	// pod is the pod to read the output from; nil when it is gone or the
	// script never started.
	pod               *corev1.Pod
	started, finished time.Time
}

// observe decides whether the run is over from its Job and pods. It is pure,
// so it can be tested on any state. The earliest signal is the container's
// terminated state. Signal kills (exit codes 137 and 143) also wait for the
// pod's final phase or the Job's final condition, which tell a deadline or an
// eviction from a kill by the script itself.
//
// A deadline is final as soon as the pod's status reason or the Job's
// FailureTarget condition shows it, even while the kubelet is still killing
// the script. A fork bomb at its memory limit can take minutes to die, and
// the Job's Failed condition waits for that.
func observe(job *batchv1.Job, pods []*corev1.Pod, timeout time.Duration) (outcome, bool) {
	jobFailed := jobCondition(job, batchv1.JobFailed)
	if jobFailed == nil {
		jobFailed = jobCondition(job, batchv1.JobFailureTarget)
	}
	jobComplete := jobCondition(job, batchv1.JobComplete)

	for _, pod := range pods {
		status := containerStatus(pod)
		if status == nil {
			continue
		}
		if w := status.State.Waiting; w != nil && fatalWaitingReasons[w.Reason] {
			return outcome{
				status:  run.StatusError,
				message: fmt.Sprintf("the script's container could not start: %s: %s", w.Reason, w.Message),
			}, true
		}
		term := status.State.Terminated
		if term == nil {
			if pod.Status.Reason == reasonDeadlineExceeded && status.State.Running != nil {
				return killedAtDeadline(pod, status.State.Running, timeout), true
			}
			continue
		}
		podFinal := pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
		if isSignalKill(term.ExitCode) && term.Reason != reasonOOMKilled && !podFinal && jobFailed == nil {
			continue // Wait to learn who sent the signal.
		}
		return terminatedOutcome(pod, term, jobFailed, timeout), true
	}

	if jobFailed != nil && jobFailed.Reason == reasonDeadlineExceeded {
		return failedJobOutcome(job, jobFailed, pods, timeout), true
	}
	// The Job's condition can arrive before its pod's last update, which has
	// the exit code and keeps the pod's output reachable.
	if anyRunning(pods) {
		return outcome{}, false
	}
	switch {
	case jobFailed != nil:
		return failedJobOutcome(job, jobFailed, pods, timeout), true
	case jobComplete != nil:
		return outcome{
			status:   run.StatusSucceeded,
			exitCode: run.IntPtr(0),
			started:  startTime(job),
			finished: jobComplete.LastTransitionTime.Time,
		}, true
	}
	return outcome{}, false
}

func terminatedOutcome(pod *corev1.Pod, term *corev1.ContainerStateTerminated, jobFailed *batchv1.JobCondition, timeout time.Duration) outcome {
	out := outcome{
		exitCode: run.IntPtr(int(term.ExitCode)),
		pod:      pod,
		started:  term.StartedAt.Time,
		finished: term.FinishedAt.Time,
	}
	switch {
	case term.ExitCode == 0:
		out.status = run.StatusSucceeded
	case term.Reason == reasonOOMKilled:
		out.status = run.StatusOOMKilled
		out.message = fmt.Sprintf("the script was killed at its memory limit of %s", memoryLimit(pod))
	case pod.Status.Reason == reasonDeadlineExceeded || (jobFailed != nil && jobFailed.Reason == reasonDeadlineExceeded):
		out.status = run.StatusTimedOut
		out.message = fmt.Sprintf("the script did not finish within its time limit of %s", timeout)
	case pod.Status.Reason != "":
		out.status = run.StatusFailed
		out.message = fmt.Sprintf("the script's pod failed: %s: %s", pod.Status.Reason, pod.Status.Message)
	default:
		out.status = run.StatusFailed
		out.message = fmt.Sprintf("the script exited with code %d", term.ExitCode)
	}
	return out
}

// killedAtDeadline is the outcome of a script that the kubelet is killing at
// the pod's deadline. The API records no time for that, so finished is the
// start plus the time limit.
func killedAtDeadline(pod *corev1.Pod, running *corev1.ContainerStateRunning, timeout time.Duration) outcome {
	return outcome{
		status:   run.StatusTimedOut,
		message:  fmt.Sprintf("the script did not finish within its time limit of %s", timeout),
		pod:      pod,
		started:  running.StartedAt.Time,
		finished: running.StartedAt.Add(timeout),
	}
}

// failedJobOutcome explains a failed Job whose pods show no terminated
// script container: the Job controller deleted the pod, or the pod is still
// being killed at the Job's deadline, in which case its output is read.
func failedJobOutcome(job *batchv1.Job, cond *batchv1.JobCondition, pods []*corev1.Pod, timeout time.Duration) outcome {
	out := outcome{started: startTime(job), finished: cond.LastTransitionTime.Time}
	switch {
	case job.Status.Failed == 0 && job.Status.Succeeded == 0 && len(pods) == 0:
		out.status = run.StatusError
		out.message = fmt.Sprintf("no pod ever ran for the job (%s: %s); check the namespace's ResourceQuota and LimitRange and the job's events",
			cond.Reason, cond.Message)
	case len(pods) > 0 && !everStarted(pods[0]):
		out.status = run.StatusError
		out.message = fmt.Sprintf("the script's pod never started before the job failed (%s): %s", cond.Reason, podPendingReason(pods[0]))
	case cond.Reason == reasonDeadlineExceeded && len(pods) > 0:
		out.status = run.StatusTimedOut
		out.message = fmt.Sprintf("the script did not finish within its time limit of %s", timeout)
		out.pod = pods[0]
		if running := containerStatus(pods[0]).State.Running; running != nil {
			out.started = running.StartedAt.Time
		}
	case cond.Reason == reasonDeadlineExceeded:
		out.status = run.StatusTimedOut
		out.message = fmt.Sprintf("the script did not finish within its time limit of %s; its pod was removed, so no output was kept", timeout)
	default:
		out.status = run.StatusFailed
		out.message = fmt.Sprintf("the job failed: %s: %s", cond.Reason, cond.Message)
	}
	return out
}

func jobCondition(job *batchv1.Job, kind batchv1.JobConditionType) *batchv1.JobCondition {
	if job == nil {
		return nil
	}
	for i := range job.Status.Conditions {
		c := &job.Status.Conditions[i]
		if c.Type == kind && c.Status == corev1.ConditionTrue {
			return c
		}
	}
	return nil
}

func containerStatus(pod *corev1.Pod) *corev1.ContainerStatus {
	for i := range pod.Status.ContainerStatuses {
		if pod.Status.ContainerStatuses[i].Name == ContainerName {
			return &pod.Status.ContainerStatuses[i]
		}
	}
	return nil
}

func anyRunning(pods []*corev1.Pod) bool {
	for _, pod := range pods {
		if s := containerStatus(pod); s != nil && s.State.Running != nil {
			return true
		}
	}
	return false
}

func everStarted(pod *corev1.Pod) bool {
	s := containerStatus(pod)
	return s != nil && (s.State.Running != nil || s.State.Terminated != nil)
}

func podPendingReason(pod *corev1.Pod) string {
	if s := containerStatus(pod); s != nil && s.State.Waiting != nil {
		return s.State.Waiting.Reason + ": " + s.State.Waiting.Message
	}
	for _, c := range pod.Status.Conditions {
		if c.Status != corev1.ConditionTrue && c.Message != "" {
			return string(c.Type) + ": " + c.Message
		}
	}
	return "phase " + string(pod.Status.Phase)
}

func startTime(job *batchv1.Job) time.Time {
	if job != nil && job.Status.StartTime != nil {
		return job.Status.StartTime.Time
	}
	return time.Time{}
}

func memoryLimit(pod *corev1.Pod) string {
	if c := scriptContainer(&pod.Spec); c != nil {
		if q, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
			return q.String()
		}
	}
	return "unknown"
}

func isSignalKill(code int32) bool { return code == 128+9 || code == 128+15 }
