// Package local runs scripts as processes on this machine, for development
// without a cluster. It is not a security boundary: a script can read and
// write whatever the receiver's user can, and use the network.
package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"knative.dev/pkg/logging"

	"github.com/scriptrun/scriptrun/function/run"
)

// Options configure a Runner.
type Options struct {
	// MaxOutputBytes caps the output kept from each run.
	MaxOutputBytes int
	// Remember is how long a finished run's result is kept for
	// redeliveries, like a Job's ttlSecondsAfterFinished.
	Remember time.Duration
	// MaxRemembered caps how many results are kept.
	MaxRemembered int
	// MaxRememberedBytes caps the output bytes of the results kept.
	MaxRememberedBytes int
	// MaxRunning caps the scripts running at once. Past it, runs fail with
	// run.ErrThrottled. A run goes on after its sender hangs up, so the
	// receiver's in-flight cap alone does not bound the processes.
	MaxRunning int
	// TempDir is the parent of each run's directory; empty means os.TempDir.
	TempDir string
}

// Runner runs each script in a fresh temporary directory, with a scrubbed
// environment, in its own process group, which is killed whole at the
// deadline. Concurrent and later deliveries of the same run share one
// execution and get the same result, for as long as Remember.
type Runner struct {
	opts  Options
	cache *cache

	slots    chan struct{}
	executed sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	running map[int]struct{} // process group ids of the scripts running now
}

var _ run.Runner = (*Runner)(nil)

// NewRunner returns a Runner.
func NewRunner(opts Options) *Runner {
	return &Runner{
		opts:    opts,
		cache:   newCache(opts.Remember, opts.MaxRemembered, opts.MaxRememberedBytes),
		slots:   make(chan struct{}, max(opts.MaxRunning, 1)),
		running: make(map[int]struct{}),
	}
}

// closeWait bounds how long Close waits for killed scripts to be reaped and
// their directories removed.
const closeWait = 5 * time.Second

// Close kills the process groups of every script still running, so that none
// outlives the receiver, waits for them to be reaped, and makes later runs
// fail with run.ErrShuttingDown.
func (r *Runner) Close() error {
	r.mu.Lock()
	r.closed = true
	for pgid := range r.running {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
	r.mu.Unlock()

	reaped := make(chan struct{})
	go func() {
		r.executed.Wait()
		close(reaped)
	}()
	select {
	case <-reaped:
		return nil
	case <-time.After(closeWait):
		return fmt.Errorf("local scripts still running %s after they were killed", closeWait)
	}
}

// track records a started process group, or reports false after Close.
func (r *Runner) track(pgid int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.running[pgid] = struct{}{}
	return true
}

func (r *Runner) untrack(pgid int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.running, pgid)
}

// Run runs spec once per run id and returns its result. It returns an error
// only when the process cannot be started or ctx ends first. In the second
// case the run goes on for other deliveries of the same run.
func (r *Runner) Run(ctx context.Context, spec run.Spec) (run.Result, error) {
	entry, first := r.cache.join(spec.ID, spec.Digest)
	if entry.digest != spec.Digest {
		return run.Result{
			RequestID: spec.RequestID,
			Language:  spec.Language,
			Status:    run.StatusRejected,
			Message:   "requestId: " + run.ConflictMessage(spec),
		}, nil
	}
	if first {
		select {
		case r.slots <- struct{}{}:
		default:
			entry.err = fmt.Errorf("%w: %d local scripts running, the maximum (SCRIPTRUN_MAX_IN_FLIGHT)", run.ErrThrottled, cap(r.slots))
			r.cache.finish(entry)
			return run.Result{}, entry.err
		}
		// The execution belongs to the run, not to this delivery, so it
		// outlives a delivery whose sender gave up.
		r.executed.Add(1)
		go func() {
			defer r.executed.Done()
			defer func() { <-r.slots }()
			r.execute(context.WithoutCancel(ctx), spec, entry)
		}()
	}

	select {
	case <-entry.done:
		return entry.result, entry.err
	case <-ctx.Done():
		return run.Result{}, fmt.Errorf("%w: waiting for run %s: %w", run.ErrUnavailable, spec.ID, ctx.Err())
	}
}

func (r *Runner) execute(ctx context.Context, spec run.Spec, entry *entry) {
	defer r.cache.finish(entry)
	entry.result, entry.err = r.runProcess(ctx, spec)
	if entry.err != nil {
		logging.FromContext(ctx).Errorw("Local run failed to start", "runId", spec.ID, "error", entry.err)
	}
}

func (r *Runner) runProcess(ctx context.Context, spec run.Spec) (run.Result, error) {
	result := run.Result{RequestID: spec.RequestID, Language: spec.Language}

	dir, err := os.MkdirTemp(r.opts.TempDir, "scriptrun-")
	if err != nil {
		return run.Result{}, fmt.Errorf("%w: creating run directory: %w", run.ErrInternal, err)
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "run_tests."+spec.Runtime.FileExtension)
	if err := os.WriteFile(script, []byte(spec.Script), 0o600); err != nil {
		return run.Result{}, fmt.Errorf("%w: writing script: %w", run.ErrInternal, err)
	}

	// The command is looked up on the receiver's PATH, since the run's own
	// PATH is reduced to the standard directories and the command's own.
	program, err := exec.LookPath(spec.Runtime.LocalCommand[0])
	if err != nil {
		return run.Result{}, fmt.Errorf("%w: runtime %s: %w; install it or change localCommand in the runtime table",
			run.ErrInternal, spec.Language, err)
	}
	args := append(append(append([]string{}, spec.Runtime.LocalCommand[1:]...), script), spec.Args...)
	output := newCappedBuffer(r.opts.MaxOutputBytes)
	cmd := exec.Command(program, args...)
	cmd.Dir = dir
	cmd.Env = scrubbedEnv(dir, filepath.Dir(program))
	cmd.Stdin = strings.NewReader(spec.Stdin)
	cmd.Stdout = output
	cmd.Stderr = output
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A background child that keeps the output open must not hold the run
	// past its script's exit for more than this.
	cmd.WaitDelay = time.Second

	started := time.Now()
	if err := cmd.Start(); err != nil {
		return run.Result{}, fmt.Errorf("%w: starting %s: %w", run.ErrInternal, program, err)
	}
	if !r.track(cmd.Process.Pid) {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		return run.Result{}, fmt.Errorf("%w: local runner closed", run.ErrShuttingDown)
	}
	defer r.untrack(cmd.Process.Pid)
	timedOut := killAfter(cmd.Process.Pid, spec.Timeout)
	waitErr := cmd.Wait()
	finished := time.Now()
	timedOut.stop()
	if errors.Is(waitErr, exec.ErrWaitDelay) {
		waitErr = nil // The script itself ended; only a child lingered.
	}

	result.SetTimes(started, finished)
	result.SetOutput(output.Bytes(), output.Truncated())
	classifyExit(&result, cmd.ProcessState, waitErr, timedOut.fired(), spec.Timeout)
	return result, nil
}

// classifyExit sets the status, exit code and message from how the process
// ended. A process killed by a signal reports 128 plus the signal number,
// as a container does.
func classifyExit(result *run.Result, state *os.ProcessState, waitErr error, timedOut bool, timeout time.Duration) {
	code := state.ExitCode()
	if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		code = 128 + int(ws.Signal())
	}
	result.ExitCode = run.IntPtr(code)

	var exitErr *exec.ExitError
	switch {
	case timedOut:
		result.Status = run.StatusTimedOut
		result.Message = fmt.Sprintf("the script did not finish within its time limit of %s", timeout)
	case code == 0 && waitErr == nil:
		result.Status = run.StatusSucceeded
	case waitErr != nil && !errors.As(waitErr, &exitErr):
		result.Status = run.StatusFailed
		result.Message = fmt.Sprintf("reading the script's output failed: %v", waitErr)
	default:
		result.Status = run.StatusFailed
		result.Message = fmt.Sprintf("the script exited with code %d", code)
	}
}

// scrubbedEnv is the whole environment of a run: nothing of the receiver's,
// so no credentials or configuration leak into scripts.
func scrubbedEnv(home, programDir string) []string {
	return []string{
		"PATH=" + programDir + ":/usr/local/bin:/usr/bin:/bin",
		"HOME=" + home,
		"TMPDIR=" + home,
		"LANG=C.UTF-8",
		"PYTHONUNBUFFERED=1",
		"PYTHONDONTWRITEBYTECODE=1",
	}
}
