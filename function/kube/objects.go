package kube

import (
	"fmt"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"knative.dev/pkg/kmeta"

	"github.com/scriptrun/scriptrun/function/run"
)

// Labels, annotations and keys on the objects of a run.
const (
	// AppLabel and AppValue mark every object of a run; the sweeper selects
	// ConfigMaps by them.
	AppLabel = "app"
	AppValue = "language-test"
	// RunIDLabel holds the run id on the ConfigMap, the Job and its pods.
	RunIDLabel = "scriptrun.dev/run-id"
	// DigestAnnotation holds run.Digest of the request, to detect a
	// requestId reused for a different request.
	DigestAnnotation = "scriptrun.dev/request-digest"
	// RequestIDAnnotation holds the caller's requestId as sent.
	RequestIDAnnotation = "scriptrun.dev/request-id"

	// ScriptKey and StdinKey are the ConfigMap keys of the script and stdin.
	ScriptKey = "run_tests"
	StdinKey  = "stdin"

	// ContainerName is the container that runs the script.
	ContainerName = "script"
)

// JobName returns the Job's name for a run id: at most 63 characters and a
// valid DNS-1123 label.
func JobName(runID string) string { return kmeta.ChildName("language-test-job-", runID) }

// ConfigMapName returns the name of the ConfigMap holding a run's script.
func ConfigMapName(runID string) string { return kmeta.ChildName("user-script-", runID) }

// newConfigMap returns the ConfigMap that holds spec's script and stdin.
func newConfigMap(namespace string, spec run.Spec) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Name:        ConfigMapName(spec.ID),
			Namespace:   namespace,
			Labels:      runLabels(spec.ID),
			Annotations: runAnnotations(spec),
		},
		Data: map[string]string{ScriptKey: spec.Script, StdinKey: spec.Stdin},
	}
}

// newJob renders the template for spec and then sets the fields scriptrun
// relies on, whatever the template sets: labels, backoffLimit 0,
// restartPolicy Never, the deadlines and the TTL.
func (r *Runner) newJob(spec run.Spec) (*batchv1.Job, error) {
	job, err := r.template.Render(Values{
		JobName:        JobName(spec.ID),
		ConfigMapName:  ConfigMapName(spec.ID),
		RequestID:      spec.ID,
		Image:          spec.Runtime.Image,
		FileExtension:  spec.Runtime.FileExtension,
		RuntimeCommand: spec.Runtime.Command,
		Args:           spec.Args,
	})
	if err != nil {
		return nil, err
	}
	job.Namespace = r.namespace
	job.Labels = merge(job.Labels, runLabels(spec.ID))
	job.Annotations = merge(job.Annotations, runAnnotations(spec))
	job.Spec.Template.Labels = merge(job.Spec.Template.Labels, runLabels(spec.ID))

	timeout := int64(spec.Timeout.Seconds())
	backoff := int32(0)
	ttl := r.jobTTL
	jobDeadline := timeout + r.jobDeadlineMargin
	job.Spec.BackoffLimit = &backoff
	job.Spec.TTLSecondsAfterFinished = &ttl
	// The pod's deadline ends the script and keeps the pod, so its output
	// can still be read. The Job's later deadline is a backstop for a pod
	// that never starts.
	job.Spec.ActiveDeadlineSeconds = &jobDeadline
	job.Spec.Template.Spec.ActiveDeadlineSeconds = &timeout
	job.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyNever

	if err := validateJob(job); err != nil {
		return nil, err
	}
	return job, nil
}

// validateJob checks what the API server would reject late or not at all.
func validateJob(job *batchv1.Job) error {
	if errs := validation.IsDNS1123Label(job.Name); len(errs) > 0 {
		return fmt.Errorf("job name %q is invalid: %v", job.Name, errs)
	}
	for _, labels := range []map[string]string{job.Labels, job.Spec.Template.Labels} {
		for key, value := range labels {
			if errs := validation.IsQualifiedName(key); len(errs) > 0 {
				return fmt.Errorf("label key %q is invalid: %v", key, errs)
			}
			if errs := validation.IsValidLabelValue(value); len(errs) > 0 {
				return fmt.Errorf("label %s=%q is invalid: %v", key, value, errs)
			}
		}
	}
	c := scriptContainer(&job.Spec.Template.Spec)
	if c == nil {
		return fmt.Errorf("job %s has no container named %q", job.Name, ContainerName)
	}
	if c.Image == "" || len(c.Command)+len(c.Args) == 0 {
		return fmt.Errorf("container %q of job %s has no image or no command", ContainerName, job.Name)
	}
	// The API server checks this only for pods, so a Job with such an image
	// would be accepted and then never get a pod.
	if strings.TrimSpace(c.Image) != c.Image {
		return fmt.Errorf("image %q of job %s has leading or trailing whitespace: remove it", c.Image, job.Name)
	}
	return nil
}

func runLabels(runID string) map[string]string {
	return map[string]string{AppLabel: AppValue, RunIDLabel: runID}
}

func runAnnotations(spec run.Spec) map[string]string {
	return map[string]string{DigestAnnotation: spec.Digest, RequestIDAnnotation: spec.RequestID}
}

// merge returns base with extra's entries added, overriding base's.
func merge(base, extra map[string]string) map[string]string {
	out := make(map[string]string, len(base)+len(extra))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

func scriptContainer(spec *corev1.PodSpec) *corev1.Container {
	for i := range spec.Containers {
		if spec.Containers[i].Name == ContainerName {
			return &spec.Containers[i]
		}
	}
	return nil
}

func mountsConfigMap(spec *corev1.PodSpec, name string) bool {
	for _, v := range spec.Volumes {
		if v.ConfigMap != nil && v.ConfigMap.Name == name {
			return true
		}
	}
	return false
}
