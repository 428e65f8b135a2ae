package kube

import (
	"context"
	"fmt"
	"sync"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"knative.dev/pkg/logging"
)

const runIDIndex = "runID"

// Tracker watches the Jobs and pods of all runs through one shared informer
// each, label-selected in the runs namespace, and wakes the runs waiting on
// them. A run's wait costs a map entry, not a watch.
type Tracker struct {
	factory informers.SharedInformerFactory
	jobs    cache.SharedIndexInformer
	pods    cache.SharedIndexInformer

	mu      sync.Mutex
	waiters map[string]map[chan struct{}]struct{}
}

// NewTracker returns a Tracker for the runs in namespace. Call Start before
// Wait.
func NewTracker(client kubernetes.Interface, namespace string) (*Tracker, error) {
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = RunIDLabel }),
		// Managed fields are large and unused here.
		informers.WithTransform(stripManagedFields),
	)
	t := &Tracker{
		factory: factory,
		jobs:    factory.Batch().V1().Jobs().Informer(),
		pods:    factory.Core().V1().Pods().Informer(),
		waiters: make(map[string]map[chan struct{}]struct{}),
	}
	for _, inf := range []cache.SharedIndexInformer{t.jobs, t.pods} {
		if err := inf.AddIndexers(cache.Indexers{runIDIndex: indexByRunID}); err != nil {
			return nil, fmt.Errorf("adding run id index: %w", err)
		}
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    t.notify,
			UpdateFunc: func(_, obj any) { t.notify(obj) },
			DeleteFunc: t.notify,
		}); err != nil {
			return nil, fmt.Errorf("adding event handler: %w", err)
		}
	}
	return t, nil
}

// Start runs the informers until ctx ends. Watch errors are logged, and the
// informers relist and rewatch on their own, including after an expired
// resource version.
func (t *Tracker) Start(ctx context.Context) {
	logger := logging.FromContext(ctx)
	for name, inf := range map[string]cache.SharedIndexInformer{"jobs": t.jobs, "pods": t.pods} {
		_ = inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
			logger.Warnw("Watch failed; retrying", "resource", name, "error", err)
		})
	}
	t.factory.Start(ctx.Done())
}

// HasSynced reports whether both informers have listed once.
func (t *Tracker) HasSynced() bool { return t.jobs.HasSynced() && t.pods.HasSynced() }

// WaitForSync blocks until HasSynced or ctx ends, and reports which.
func (t *Tracker) WaitForSync(ctx context.Context) bool {
	return cache.WaitForCacheSync(ctx.Done(), t.jobs.HasSynced, t.pods.HasSynced)
}

// Wait blocks until done returns true for the run's Job and pods as cached,
// or ctx ends. done is called again after every change to them. The Job
// passed to done is nil until the informer has seen it.
func (t *Tracker) Wait(ctx context.Context, runID string, done func(*batchv1.Job, []*corev1.Pod) bool) error {
	wake := make(chan struct{}, 1)
	t.subscribe(runID, wake)
	defer t.unsubscribe(runID, wake)

	for {
		// Subscribed first, then read: a change between the two still wakes us.
		job, pods := t.lookup(runID)
		if done(job, pods) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		}
	}
}

// Waiting returns how many waits are in progress, for tests of leaks.
func (t *Tracker) Waiting() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, set := range t.waiters {
		n += len(set)
	}
	return n
}

func (t *Tracker) lookup(runID string) (*batchv1.Job, []*corev1.Pod) {
	var job *batchv1.Job
	jobs, _ := t.jobs.GetIndexer().ByIndex(runIDIndex, runID)
	for _, obj := range jobs {
		if j, ok := obj.(*batchv1.Job); ok {
			job = j
		}
	}
	var pods []*corev1.Pod
	objs, _ := t.pods.GetIndexer().ByIndex(runIDIndex, runID)
	for _, obj := range objs {
		if p, ok := obj.(*corev1.Pod); ok {
			pods = append(pods, p)
		}
	}
	return job, pods
}

func (t *Tracker) subscribe(runID string, wake chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.waiters[runID] == nil {
		t.waiters[runID] = make(map[chan struct{}]struct{})
	}
	t.waiters[runID][wake] = struct{}{}
}

func (t *Tracker) unsubscribe(runID string, wake chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.waiters[runID], wake)
	if len(t.waiters[runID]) == 0 {
		delete(t.waiters, runID)
	}
}

func (t *Tracker) notify(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	meta, err := metaAccessor(obj)
	if err != nil {
		return
	}
	runID := meta.GetLabels()[RunIDLabel]

	t.mu.Lock()
	defer t.mu.Unlock()
	for wake := range t.waiters[runID] {
		select {
		case wake <- struct{}{}:
		default: // A wake-up is already pending; one is enough.
		}
	}
}

func indexByRunID(obj any) ([]string, error) {
	meta, err := metaAccessor(obj)
	if err != nil {
		return nil, err
	}
	if id, ok := meta.GetLabels()[RunIDLabel]; ok {
		return []string{id}, nil
	}
	return nil, nil
}

func stripManagedFields(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

func metaAccessor(obj any) (metav1.Object, error) {
	m, ok := obj.(metav1.Object)
	if !ok {
		return nil, fmt.Errorf("object of type %T has no metadata", obj)
	}
	return m, nil
}
