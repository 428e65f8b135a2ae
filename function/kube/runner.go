// Package kube runs scripts as Kubernetes Jobs: a ConfigMap holds the
// script, a Job rendered from the template runs it, one shared informer
// reports when it ends, and pods/log returns its output.
package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"knative.dev/pkg/logging"

	"github.com/scriptrun/scriptrun/function/run"
)

// cleanupTimeout bounds the ConfigMap deletion after a run, which runs even
// when the event's context has ended.
const cleanupTimeout = 10 * time.Second

// Options configure a Runner.
type Options struct {
	// Namespace holds the runs' ConfigMaps and Jobs.
	Namespace string
	// Template renders each run's Job.
	Template *Template
	// JobTTL becomes the Jobs' ttlSecondsAfterFinished.
	JobTTL time.Duration
	// JobDeadlineMargin is added to a run's timeout for the Job's
	// activeDeadlineSeconds, a backstop behind the pod's own deadline.
	JobDeadlineMargin time.Duration
	// MaxOutputBytes caps the output read from each run.
	MaxOutputBytes int
}

// Runner runs each script as a Job. Names derive from the run id, so a
// redelivered event finds the existing ConfigMap and Job and waits on them
// instead of starting a second run.
type Runner struct {
	client            kubernetes.Interface
	tracker           *Tracker
	template          *Template
	namespace         string
	jobTTL            int32
	jobDeadlineMargin int64
	maxOutputBytes    int
}

var _ run.Runner = (*Runner)(nil)

// NewRunner returns a Runner. The tracker must watch opts.Namespace.
func NewRunner(client kubernetes.Interface, tracker *Tracker, opts Options) *Runner {
	return &Runner{
		client:            client,
		tracker:           tracker,
		template:          opts.Template,
		namespace:         opts.Namespace,
		jobTTL:            int32(opts.JobTTL.Seconds()),
		jobDeadlineMargin: int64(opts.JobDeadlineMargin.Seconds()),
		maxOutputBytes:    opts.MaxOutputBytes,
	}
}

// Run creates the run's ConfigMap and Job, waits for the Job through the
// tracker, reads the output, deletes the ConfigMap and returns the result.
// A Job the API server rejects as invalid yields a result with status error;
// a requestId reused for a different request yields status rejected. Other
// failures return an error wrapping one of run's error classes. A failure to
// create the Job deletes the ConfigMap. A later failure leaves it in place for
// a redelivery, owned by the Job unless the owner patch was what failed.
func (r *Runner) Run(ctx context.Context, spec run.Spec) (run.Result, error) {
	logger := logging.FromContext(ctx).With("namespace", r.namespace, "job", JobName(spec.ID))
	ctx = logging.WithLogger(ctx, logger)

	job, err := r.newJob(spec)
	if err != nil {
		return run.Result{}, fmt.Errorf("%w: rendering job for run %s: %w", run.ErrInternal, spec.ID, err)
	}
	cm := newConfigMap(r.namespace, spec)

	if err := r.createConfigMap(ctx, cm, spec); err != nil {
		return resultOrError(spec, err)
	}

	job, err = r.createJob(ctx, job, spec)
	if err != nil {
		// The ConfigMap carries this request's digest, so it is this run's to
		// delete even when the existing Job belongs to a different request.
		r.deleteConfigMap(ctx, cm.Name)
		return resultOrError(spec, err)
	}

	if err := r.adoptConfigMap(ctx, cm.Name, job); err != nil {
		return run.Result{}, err
	}

	var out outcome
	err = r.tracker.Wait(ctx, spec.ID, func(job *batchv1.Job, pods []*corev1.Pod) bool {
		var done bool
		out, done = observe(job, pods, spec.Timeout)
		return done
	})
	if err != nil {
		return run.Result{}, classify(err, "waiting for job %s/%s", r.namespace, job.Name)
	}

	result, err := r.collect(ctx, spec, out)
	if err != nil {
		return run.Result{}, err
	}
	r.deleteConfigMap(ctx, cm.Name)
	logger.Infow("Run finished", "status", result.Status, "durationMs", result.DurationMs)
	return result, nil
}

// createConfigMap creates cm. An existing ConfigMap of the same run is fine;
// one holding a different request under the same requestId is a conflict.
func (r *Runner) createConfigMap(ctx context.Context, cm *corev1.ConfigMap, spec run.Spec) error {
	_, err := r.client.CoreV1().ConfigMaps(r.namespace).Create(ctx, cm, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		existing, getErr := r.client.CoreV1().ConfigMaps(r.namespace).Get(ctx, cm.Name, metav1.GetOptions{})
		if getErr != nil {
			return classify(getErr, "getting existing configmap %s/%s", r.namespace, cm.Name)
		}
		return checkDigest(existing.Annotations, spec)
	}
	if err != nil {
		return classify(err, "creating configmap %s/%s", r.namespace, cm.Name)
	}
	logging.FromContext(ctx).Debugw("ConfigMap created", "configMap", cm.Name)
	return nil
}

// createJob creates job, or returns the run's existing Job.
func (r *Runner) createJob(ctx context.Context, job *batchv1.Job, spec run.Spec) (*batchv1.Job, error) {
	created, err := r.client.BatchV1().Jobs(r.namespace).Create(ctx, job, metav1.CreateOptions{})
	switch {
	case err == nil:
		logging.FromContext(ctx).Infow("Job created", "timeout", spec.Timeout.String())
		return created, nil
	case apierrors.IsAlreadyExists(err):
		existing, getErr := r.client.BatchV1().Jobs(r.namespace).Get(ctx, job.Name, metav1.GetOptions{})
		if getErr != nil {
			return nil, classify(getErr, "getting existing job %s/%s", r.namespace, job.Name)
		}
		if err := checkDigest(existing.Annotations, spec); err != nil {
			return nil, err
		}
		logging.FromContext(ctx).Infow("Job exists; waiting on it")
		return existing, nil
	case apierrors.IsInvalid(err):
		return nil, &invalidJobError{err: err}
	default:
		return nil, classify(err, "creating job %s/%s", r.namespace, job.Name)
	}
}

// adoptConfigMap makes job the ConfigMap's owner, so that garbage collection
// deletes the ConfigMap with the Job even if this receiver dies.
func (r *Runner) adoptConfigMap(ctx context.Context, name string, job *batchv1.Job) error {
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{
			"ownerReferences": []metav1.OwnerReference{{
				APIVersion: "batch/v1",
				Kind:       "Job",
				Name:       job.Name,
				UID:        job.UID,
			}},
		},
	})
	if err != nil {
		return fmt.Errorf("%w: encoding owner patch: %w", run.ErrInternal, err)
	}
	_, err = r.client.CoreV1().ConfigMaps(r.namespace).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return classify(err, "setting owner of configmap %s/%s", r.namespace, name)
	}
	return nil
}

// collect turns the outcome into a result, reading the output when the
// script's pod still exists.
func (r *Runner) collect(ctx context.Context, spec run.Spec, out outcome) (run.Result, error) {
	result := run.Result{
		RequestID: spec.RequestID,
		Language:  spec.Language,
		Status:    out.status,
		ExitCode:  out.exitCode,
		Message:   out.message,
	}
	result.SetTimes(out.started, out.finished)
	if out.pod == nil {
		return result, nil
	}

	output, truncated, err := r.readOutput(ctx, out.pod, r.maxOutputBytes)
	switch {
	case apierrors.IsNotFound(err):
		result.Message = joinMessage(result.Message, "the pod was removed before its output was read")
	case err != nil:
		return run.Result{}, classify(err, "reading log of pod %s/%s", out.pod.Namespace, out.pod.Name)
	}
	result.SetOutput(output, truncated)
	return result, nil
}

// deleteConfigMap deletes the run's ConfigMap, even after ctx has ended.
// A failure is logged, not returned: the Job owns the ConfigMap, and the
// sweeper removes any that garbage collection misses.
func (r *Runner) deleteConfigMap(ctx context.Context, name string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	err := r.client.CoreV1().ConfigMaps(r.namespace).Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		logging.FromContext(ctx).Warnw("Deleting ConfigMap failed; the sweeper will retry", "configMap", name, "error", err)
	}
}

// invalidJobError is the API server rejecting a rendered Job.
type invalidJobError struct{ err error }

func (e *invalidJobError) Error() string { return e.err.Error() }

// conflictError is a run id that already names a different request.
type conflictError struct{ spec run.Spec }

func (e *conflictError) Error() string { return run.ConflictMessage(e.spec) }

func checkDigest(annotations map[string]string, spec run.Spec) error {
	if annotations[DigestAnnotation] != spec.Digest {
		return &conflictError{spec: spec}
	}
	return nil
}

// resultOrError converts a conflict or an invalid Job into a result, and
// returns every other error unchanged.
func resultOrError(spec run.Spec, err error) (run.Result, error) {
	result := run.Result{RequestID: spec.RequestID, Language: spec.Language}
	switch e := err.(type) {
	case *conflictError:
		result.Status, result.Message = run.StatusRejected, "requestId: "+e.Error()
	case *invalidJobError:
		result.Status, result.Message = run.StatusError, "the API server rejected the run's job: "+e.Error()
	default:
		return run.Result{}, err
	}
	return result, nil
}

func joinMessage(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}
