// Package function is scriptrun's Knative function: it turns each
// run.requested CloudEvent into one run of the user's script and returns a
// run.completed event. It keeps the Knative Functions shape (New, Start,
// Stop, Ready, Alive, Handle), so cmd/receiver and func-go can both serve it.
package function

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"k8s.io/client-go/kubernetes"
	"knative.dev/pkg/logging"

	"github.com/scriptrun/scriptrun/function/kube"
	"github.com/scriptrun/scriptrun/function/local"
	"github.com/scriptrun/scriptrun/function/run"
	"github.com/scriptrun/scriptrun/function/runtimes"
)

// maxRemembered and maxRememberedBytes cap the local runner's memory of
// finished runs, in runs and in output bytes.
const (
	maxRemembered      = 10000
	maxRememberedBytes = 256 << 20
)

// Function handles run.requested events. Its zero value is not usable: call
// New, then Start.
type Function struct {
	cfg       Config
	validator run.Validator
	runner    run.Runner
	ready     func() bool

	inFlight chan struct{}
	draining atomic.Bool
	// abort ends the contexts of in-flight runs when the shutdown grace
	// period is over.
	abort     context.Context
	abortRuns context.CancelFunc
	// stop ends the informers started by Start.
	stop     context.CancelFunc
	stopOnce sync.Once
}

// New returns a Function that reads its configuration from the environment
// when Start is called.
func New() *Function { return &Function{} }

// NewWithConfig returns a Function with cfg, which Start uses as it is.
func NewWithConfig(cfg Config) *Function { return &Function{cfg: cfg} }

// Start loads the configuration (unless NewWithConfig gave one), the runtime
// table and the Job template, and starts the runner. The Kubernetes runner's
// informers keep running until Stop; Ready reports when they have synced.
// The env map of the Knative Functions interface is not used: the
// configuration comes from the process environment.
func (f *Function) Start(ctx context.Context, _ map[string]string) error {
	if f.cfg == (Config{}) {
		cfg, err := LoadConfig()
		if err != nil {
			return err
		}
		f.cfg = cfg
	} else if err := f.cfg.Validate(); err != nil {
		return err
	}

	table, err := runtimes.Load(f.cfg.Runtimes)
	if err != nil {
		return err
	}
	f.validator = run.Validator{Runtimes: table, Limits: run.Limits{
		MaxScriptBytes: f.cfg.MaxScriptBytes,
		MaxStdinBytes:  f.cfg.MaxStdinBytes,
		DefaultTimeout: time.Duration(f.cfg.DefaultTimeoutSeconds) * time.Second,
		MaxTimeout:     time.Duration(f.cfg.MaxTimeoutSeconds) * time.Second,
	}}
	f.inFlight = make(chan struct{}, f.cfg.MaxInFlight)
	f.abort, f.abortRuns = context.WithCancel(context.WithoutCancel(ctx))

	background, stop := context.WithCancel(context.WithoutCancel(ctx))
	f.stop = stop
	return f.startRunner(background)
}

func (f *Function) startRunner(ctx context.Context) error {
	logger := logging.FromContext(ctx)
	useKube, err := f.wantsKubernetes()
	if err != nil {
		return err
	}
	if !useKube {
		logger.Warn("Using the local runner: scripts run as processes on this machine, " +
			"with no isolation from it. It is for development, not a security boundary.")
		f.runner = local.NewRunner(local.Options{
			MaxOutputBytes:     f.cfg.MaxOutputBytes,
			Remember:           time.Duration(f.cfg.JobTTLSeconds) * time.Second,
			MaxRemembered:      maxRemembered,
			MaxRememberedBytes: maxRememberedBytes,
			MaxRunning:         f.cfg.MaxInFlight,
		})
		f.ready = func() bool { return true }
		return nil
	}

	template, err := kube.LoadTemplate(f.cfg.JobTemplate)
	if err != nil {
		return err
	}
	restConfig, err := kube.RESTConfig(f.cfg.Kubeconfig, f.cfg.KubeQPS, f.cfg.KubeBurst)
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return fmt.Errorf("creating Kubernetes client: %w", err)
	}
	tracker, err := kube.NewTracker(client, f.cfg.Namespace)
	if err != nil {
		return err
	}
	tracker.Start(ctx)
	f.runner = kube.NewRunner(client, tracker, kube.Options{
		Namespace:         f.cfg.Namespace,
		Template:          template,
		JobTTL:            time.Duration(f.cfg.JobTTLSeconds) * time.Second,
		JobDeadlineMargin: time.Duration(f.cfg.WaitMarginSeconds) * time.Second / 2,
		MaxOutputBytes:    f.cfg.MaxOutputBytes,
	})
	f.ready = tracker.HasSynced
	logger.Infow("Using the Kubernetes runner", "host", restConfig.Host, "namespace", f.cfg.Namespace)
	return nil
}

// wantsKubernetes applies SCRIPTRUN_RUNNER. "auto" picks Kubernetes only
// when it is configured explicitly: a kubeconfig, or a pod's in-cluster
// config.
func (f *Function) wantsKubernetes() (bool, error) {
	switch f.cfg.Runner {
	case RunnerLocal:
		return false, nil
	case RunnerKubernetes:
		if f.cfg.Kubeconfig == "" && !kube.InCluster() {
			return false, fmt.Errorf("SCRIPTRUN_RUNNER=kubernetes: %w", kube.ErrNotConfigured)
		}
		return true, nil
	default:
		return f.cfg.Kubeconfig != "" || kube.InCluster(), nil
	}
}

// UsesLocalRunner reports whether Start chose the local runner.
func (f *Function) UsesLocalRunner() bool {
	_, ok := f.runner.(*local.Runner)
	return ok
}

// Ready reports whether the runner can take runs: the Kubernetes runner once
// its informers have synced, and neither while draining.
func (f *Function) Ready(context.Context) (bool, error) {
	return f.ready != nil && f.ready() && !f.draining.Load(), nil
}

// Alive reports that the process is serving.
func (f *Function) Alive(context.Context) (bool, error) { return true, nil }

// Drain makes Handle return a retryable error for new events while the runs
// in flight go on.
func (f *Function) Drain() { f.draining.Store(true) }

// AbortRuns ends the runs still in flight; their senders get a retryable
// error and deliver the events again, to this receiver's successor.
func (f *Function) AbortRuns() {
	if f.abortRuns != nil {
		f.abortRuns()
	}
}

// Stop ends in-flight runs and the informers, and kills the local runner's
// processes. Jobs on Kubernetes go on: a redelivered event finds them.
func (f *Function) Stop(context.Context) error {
	var err error
	f.stopOnce.Do(func() {
		f.Drain()
		f.AbortRuns()
		if f.stop != nil {
			f.stop()
		}
		if closer, ok := f.runner.(io.Closer); ok {
			err = closer.Close()
		}
	})
	return err
}

// Handle runs the script of one run.requested event and returns the
// run.completed reply. Invalid data gets a reply with status rejected. An
// event of another type is a *BadEventError. When scriptrun cannot finish the
// run (shutting down, too busy, or the cluster failing), the error wraps one
// of run's classes and the sender should retry; HTTPStatus maps it.
func (f *Function) Handle(ctx context.Context, e event.Event) (*event.Event, error) {
	if e.Type() != f.cfg.RequestType {
		return nil, &BadEventError{Reason: fmt.Sprintf("event type %q is not handled: send %q", e.Type(), f.cfg.RequestType)}
	}
	if f.draining.Load() {
		return nil, fmt.Errorf("%w: not accepting new runs", run.ErrShuttingDown)
	}
	select {
	case f.inFlight <- struct{}{}:
		defer func() { <-f.inFlight }()
	default:
		return nil, fmt.Errorf("%w: %d runs in flight, the maximum (SCRIPTRUN_MAX_IN_FLIGHT)", run.ErrThrottled, f.cfg.MaxInFlight)
	}

	req, err := decodeRequest(e)
	if err == nil {
		var spec run.Spec
		if spec, err = f.validator.Spec(req, e.Source(), e.ID()); err == nil {
			return f.runSpec(ctx, spec)
		}
	}
	var rejection *run.RejectedError
	if errors.As(err, &rejection) {
		logging.FromContext(ctx).Infow("Request rejected", "eventId", e.ID(), "reason", rejection.Error())
		return f.rejectedReply(e, req, rejection)
	}
	return nil, err
}

func (f *Function) runSpec(ctx context.Context, spec run.Spec) (*event.Event, error) {
	logger := logging.FromContext(ctx).With("runId", spec.ID, "language", spec.Language)
	ctx = logging.WithLogger(ctx, logger)

	ctx, cancel := context.WithTimeoutCause(ctx, f.cfg.runDeadline(spec.Timeout),
		fmt.Errorf("%w: run %s passed its deadline", run.ErrUnavailable, spec.ID))
	defer cancel()
	ctx, abort := context.WithCancelCause(ctx)
	defer abort(nil)
	stopAbort := context.AfterFunc(f.abort, func() { abort(run.ErrShuttingDown) })
	defer stopAbort()

	result, err := f.runner.Run(ctx, spec)
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", cause, err)
		}
		logger.Errorw("Run not finished; the sender should retry", "error", err)
		return nil, err
	}
	id := completedReplyID(spec.ID)
	if result.Status == run.StatusRejected {
		// A requestId reused for another request: the run's own reply
		// keeps the completed id.
		id = rejectedReplyID(spec.ID, []byte(spec.Digest))
	}
	return f.newReply(id, result)
}
