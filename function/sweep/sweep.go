// Package sweep deletes the ConfigMaps that runs left behind: those labelled
// app=language-test, older than a minimum age, whose Job is gone or finished.
// Normally the receiver deletes each run's ConfigMap, and garbage collection
// deletes it with its Job. The sweeper catches the rest, such as a ConfigMap
// created just before its receiver died.
package sweep

import (
	"context"
	"errors"
	"fmt"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"knative.dev/pkg/logging"

	"github.com/scriptrun/scriptrun/function/kube"
)

// listPageSize bounds each List call, so a namespace with many ConfigMaps
// is read in pages.
const listPageSize = 500

// Options configure a Sweeper.
type Options struct {
	// Namespace is the runs namespace.
	Namespace string
	// MinAge spares ConfigMaps younger than this, whose Job may not exist
	// yet.
	MinAge time.Duration
	// DryRun logs what would be deleted and deletes nothing.
	DryRun bool
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// Sweeper deletes stale run ConfigMaps.
type Sweeper struct {
	client kubernetes.Interface
	opts   Options
}

// Report counts what a sweep did.
type Report struct {
	// Deleted lists the ConfigMaps deleted, or that would be in a dry run.
	Deleted []string
	// Kept counts the ConfigMaps spared: too young or with a live Job.
	Kept int
}

// New returns a Sweeper.
func New(client kubernetes.Interface, opts Options) *Sweeper {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Sweeper{client: client, opts: opts}
}

// Sweep lists the run ConfigMaps and deletes the stale ones, logging each
// deletion. A failed List ends the sweep; a failed Get or Delete of one
// ConfigMap's objects skips that ConfigMap. Either way Sweep returns every
// API error joined, so the caller exits non-zero.
func (s *Sweeper) Sweep(ctx context.Context) (Report, error) {
	var report Report
	var errs []error
	selector := kube.AppLabel + "=" + kube.AppValue
	opts := metav1.ListOptions{LabelSelector: selector, Limit: listPageSize}
	for {
		list, err := s.client.CoreV1().ConfigMaps(s.opts.Namespace).List(ctx, opts)
		if err != nil {
			errs = append(errs, fmt.Errorf("listing configmaps in %s with %s: %w", s.opts.Namespace, selector, err))
			break
		}
		for i := range list.Items {
			deleted, err := s.sweepOne(ctx, &list.Items[i])
			switch {
			case err != nil:
				errs = append(errs, err)
			case deleted:
				report.Deleted = append(report.Deleted, list.Items[i].Name)
			default:
				report.Kept++
			}
		}
		if opts.Continue = list.Continue; opts.Continue == "" {
			break
		}
	}
	return report, errors.Join(errs...)
}

// sweepOne deletes cm if it is stale, and reports whether it did.
func (s *Sweeper) sweepOne(ctx context.Context, cm *corev1.ConfigMap) (bool, error) {
	age := s.opts.Now().Sub(cm.CreationTimestamp.Time)
	if age < s.opts.MinAge {
		return false, nil
	}
	jobName := ownerJob(cm)
	live, err := s.jobLive(ctx, jobName)
	if err != nil || live {
		return false, err
	}

	logger := logging.FromContext(ctx).With("configMap", cm.Name, "job", jobName, "age", age.Round(time.Second).String())
	if s.opts.DryRun {
		logger.Info("Would delete stale ConfigMap (dry run)")
		return true, nil
	}
	// The UID precondition spares a ConfigMap recreated under the same name
	// since the List.
	err = s.client.CoreV1().ConfigMaps(cm.Namespace).Delete(ctx, cm.Name, metav1.DeleteOptions{
		Preconditions: &metav1.Preconditions{UID: &cm.UID},
	})
	switch {
	case apierrors.IsNotFound(err), apierrors.IsConflict(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("deleting configmap %s/%s: %w", cm.Namespace, cm.Name, err)
	}
	logger.Info("Deleted stale ConfigMap")
	return true, nil
}

// ownerJob names cm's Job: its owner, or else the Job its run id implies.
func ownerJob(cm *corev1.ConfigMap) string {
	for _, ref := range cm.OwnerReferences {
		if ref.Kind == "Job" && ref.APIVersion == "batch/v1" {
			return ref.Name
		}
	}
	if id := cm.Labels[kube.RunIDLabel]; id != "" {
		return kube.JobName(id)
	}
	return ""
}

// jobLive reports whether the Job exists and has not finished.
func (s *Sweeper) jobLive(ctx context.Context, name string) (bool, error) {
	if name == "" {
		return false, nil
	}
	job, err := s.client.BatchV1().Jobs(s.opts.Namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("getting job %s/%s: %w", s.opts.Namespace, name, err)
	}
	return !finished(job), nil
}

// finished reports whether the Job has a Complete or Failed condition.
func finished(job *batchv1.Job) bool {
	for _, c := range job.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}
