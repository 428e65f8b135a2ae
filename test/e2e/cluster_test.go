//go:build e2e

package e2e

import (
	"context"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// These tests check the cluster itself: that a run Job shaped like the
// project's (script from a ConfigMap, UID 10001, restricted Pod Security)
// starts from the local runtime images and that its output comes back
// through pods/log.

// runnerUID is the UID and GID of user runner in the runtime images.
const runnerUID = 10001

// restrictedNamespace labels a namespace so that Pod Security Admission
// rejects pods that break the restricted profile, as run Jobs must not.
var restrictedNamespace = map[string]string{
	"pod-security.kubernetes.io/enforce":         "restricted",
	"pod-security.kubernetes.io/enforce-version": "latest",
}

func TestNodeReady(t *testing.T) {
	ctx := testContext(t, 30*time.Second)

	node, err := cluster.Client.CoreV1().Nodes().Get(ctx, cluster.NodeName, metav1.GetOptions{})
	require.NoError(t, err, "getting node %s", cluster.NodeName)

	var ready *corev1.NodeCondition
	for i := range node.Status.Conditions {
		if node.Status.Conditions[i].Type == corev1.NodeReady {
			ready = &node.Status.Conditions[i]
		}
	}
	require.NotNil(t, ready, "node %s has no Ready condition", cluster.NodeName)
	assert.Equal(t, corev1.ConditionTrue, ready.Status, "Ready condition: %s", ready.Message)
	assert.Empty(t, node.Spec.Taints, "taints keep run pods off the only node")
}

func TestPythonJobOutput(t *testing.T) {
	ctx := testContext(t, 2*time.Minute)
	namespace := NewNamespace(t, restrictedNamespace)

	// The command checks that python3 is on PATH. The script checks the
	// ConfigMap mount and the user and directories that the image sets.
	script := `import os
print("uid", os.getuid(), "gid", os.getgid())
print("cwd", os.getcwd())
print("home", os.environ["HOME"])
`
	run := runScriptJob(ctx, t, namespace, cluster.PythonImage,
		[]string{"/bin/sh", "-c", "python3 -c 'print(42)' && python3 -u /script/run_tests.py"},
		map[string]string{"run_tests.py": script})

	assert.Equal(t, int32(0), run.exitCode, "exit code; logs:\n%s", run.logs)
	assert.Equal(t, "42\nuid 10001 gid 10001\ncwd /tmp\nhome /tmp\n", run.logs)
}

func TestNodeJobOutput(t *testing.T) {
	ctx := testContext(t, 2*time.Minute)
	namespace := NewNamespace(t, restrictedNamespace)

	script := `console.log(6 * 7);
console.log("uid", process.getuid(), "cwd", process.cwd());
`
	run := runScriptJob(ctx, t, namespace, cluster.NodeImage,
		[]string{"node", "/script/run_tests.js"},
		map[string]string{"run_tests.js": script})

	assert.Equal(t, int32(0), run.exitCode, "exit code; logs:\n%s", run.logs)
	assert.Equal(t, "42\nuid 10001 cwd /tmp\n", run.logs)
}

// The kubelet's podPidsLimit (256) must stop a script that forks without end.
func TestPodPidsLimit(t *testing.T) {
	ctx := testContext(t, 2*time.Minute)
	namespace := NewNamespace(t, restrictedNamespace)

	script := `import os, signal
children = []
try:
    while len(children) < 1000:
        pid = os.fork()
        if pid == 0:
            signal.pause()
            os._exit(0)
        children.append(pid)
    print("forked", len(children), "children without error")
except OSError as error:
    print("fork failed after", len(children), "children: errno", error.errno)
for pid in children:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
`
	run := runScriptJob(ctx, t, namespace, cluster.PythonImage,
		[]string{"python3", "-u", "/script/run_tests.py"},
		map[string]string{"run_tests.py": script})

	assert.Equal(t, int32(0), run.exitCode, "exit code; logs:\n%s", run.logs)
	match := regexp.MustCompile(`fork failed after (\d+) children: errno 11\n`).FindStringSubmatch(run.logs)
	require.NotNil(t, match, "want fork to fail with EAGAIN (errno 11); logs:\n%s", run.logs)
	children, err := strconv.Atoi(match[1])
	require.NoError(t, err)
	t.Logf("fork failed with EAGAIN after %d children", children)
	assert.Less(t, children, 256, "children forked before the limit")
	assert.Greater(t, children, 200, "children forked before the limit; a much lower count means another limit hit first")
}

// scriptRun is the outcome of one Job from runScriptJob.
type scriptRun struct {
	exitCode int32
	logs     string
}

// runScriptJob stores files in a ConfigMap mounted at /script and runs
// command in image as one Job pod shaped like the project's run Jobs: UID and
// GID 10001, read-only root filesystem, writable /tmp, no privileges. It
// waits for the Job to finish and returns the container's exit code and log.
func runScriptJob(ctx context.Context, t *testing.T, namespace, image string, command []string, files map[string]string) scriptRun {
	t.Helper()
	client := cluster.Client
	const name = "script"

	_, err := client.CoreV1().ConfigMaps(namespace).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Data:       files,
	}, metav1.CreateOptions{})
	require.NoError(t, err, "creating configmap %s/%s", namespace, name)

	created := time.Now()
	_, err = client.BatchV1().Jobs(namespace).Create(ctx, scriptJob(name, image, command), metav1.CreateOptions{})
	require.NoError(t, err, "creating job %s/%s", namespace, name)

	job := WaitForJobFinished(ctx, t, namespace, name)
	t.Logf("job %s/%s finished %.2fs after it was created", namespace, name, time.Since(created).Seconds())
	require.Equal(t, int32(1), job.Status.Succeeded+job.Status.Failed, "pods that finished")

	pods := JobPods(ctx, t, namespace, name)
	require.Len(t, pods, 1, "pods of job %s/%s", namespace, name)
	pod := pods[0]
	require.Len(t, pod.Status.ContainerStatuses, 1, "container statuses of pod %s", pod.Name)
	terminated := pod.Status.ContainerStatuses[0].State.Terminated
	require.NotNil(t, terminated, "container state of pod %s", pod.Name)

	logs, err := PodLogs(ctx, namespace, pod.Name, "script")
	require.NoError(t, err)
	return scriptRun{exitCode: terminated.ExitCode, logs: logs}
}

func scriptJob(name, image string, command []string) *batchv1.Job {
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: batchv1.JobSpec{
			BackoffLimit:          ptr.To(int32(0)),
			ActiveDeadlineSeconds: ptr.To(int64(60)),
			Template: corev1.PodTemplateSpec{
				Spec: corev1.PodSpec{
					RestartPolicy:                 corev1.RestartPolicyNever,
					AutomountServiceAccountToken:  ptr.To(false),
					EnableServiceLinks:            ptr.To(false),
					TerminationGracePeriodSeconds: ptr.To(int64(1)),
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot:   ptr.To(true),
						RunAsUser:      ptr.To(int64(runnerUID)),
						RunAsGroup:     ptr.To(int64(runnerUID)),
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Containers: []corev1.Container{{
						Name:            "script",
						Image:           image,
						ImagePullPolicy: corev1.PullIfNotPresent,
						Command:         command,
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("32Mi")},
							Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
						},
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: ptr.To(false),
							ReadOnlyRootFilesystem:   ptr.To(true),
							Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						},
						VolumeMounts: []corev1.VolumeMount{
							{Name: "script", MountPath: "/script", ReadOnly: true},
							{Name: "tmp", MountPath: "/tmp"},
						},
					}},
					Volumes: []corev1.Volume{
						{Name: "script", VolumeSource: corev1.VolumeSource{
							ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: name}},
						}},
						{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
					},
				},
			},
		},
	}
}
