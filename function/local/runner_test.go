package local

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/scriptrun/scriptrun/function/run"
	"github.com/scriptrun/scriptrun/function/runtimes"
)

func newTestRunner(t *testing.T, maxOutput int) *Runner {
	t.Helper()
	return NewRunner(Options{MaxOutputBytes: maxOutput, Remember: time.Minute, MaxRemembered: 100,
		MaxRememberedBytes: 1 << 20, MaxRunning: 16, TempDir: t.TempDir()})
}

// spec builds a Spec with the built-in runtime table's entry for language.
func spec(t *testing.T, language, script string) run.Spec {
	t.Helper()
	table, err := runtimes.Load("")
	require.NoError(t, err)
	rt, ok := table[language]
	require.True(t, ok, "runtime %s", language)
	id := run.ID(t.Name()+"/"+script, "", "")
	return run.Spec{ID: id, RequestID: id, Digest: run.Digest(run.Request{Script: script}),
		Language: language, Runtime: rt, Script: script, Timeout: 10 * time.Second}
}

func TestRunStatuses(t *testing.T) {
	tests := []struct {
		name         string
		language     string
		script       string
		timeout      time.Duration
		wantStatus   run.Status
		wantExitCode int
		wantOutput   string
	}{
		{"python prints", "python", `print("hello from python")`, 0, run.StatusSucceeded, 0, "hello from python\n"},
		{"node prints", "node", `console.log("hello from node")`, 0, run.StatusSucceeded, 0, "hello from node\n"},
		{"python exits with 3", "python", "import sys\nprint('bye')\nsys.exit(3)", 0, run.StatusFailed, 3, "bye\n"},
		{"node exits with 3", "node", "process.exit(3)", 0, run.StatusFailed, 3, ""},
		{"stderr is kept", "python", "import sys\nsys.stderr.write('oops\\n')\nsys.exit(1)", 0, run.StatusFailed, 1, "oops\n"},
		{"infinite loop", "python", "print('started')\nwhile True: pass", 2 * time.Second, run.StatusTimedOut, 137, "started\n"},
		{"node infinite loop", "node", "for (;;) {}", 2 * time.Second, run.StatusTimedOut, 137, ""},
		{"killed by own signal", "python", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", 0, run.StatusFailed, 137, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := spec(t, tt.language, tt.script)
			if tt.timeout > 0 {
				s.Timeout = tt.timeout
			}

			start := time.Now()
			result, err := newTestRunner(t, 1<<20).Run(context.Background(), s)
			require.NoError(t, err)

			assert.Equal(t, tt.wantStatus, result.Status, result.Message)
			require.NotNil(t, result.ExitCode)
			assert.Equal(t, tt.wantExitCode, *result.ExitCode)
			assert.Equal(t, tt.wantOutput, result.Output)
			require.NotNil(t, result.DurationMs)
			assert.Less(t, time.Since(start), s.Timeout+5*time.Second, "the run ends near its deadline")
			if tt.wantStatus != run.StatusSucceeded {
				assert.NotEmpty(t, result.Message)
			}
		})
	}
}

func TestRunPassesStdinAndArgs(t *testing.T) {
	s := spec(t, "python", "import sys\nprint(sys.argv[1:], sys.stdin.read().upper())")
	s.Stdin = "some input"
	s.Args = []string{"--flag", "two words", "$HOME"}

	result, err := newTestRunner(t, 1<<20).Run(context.Background(), s)
	require.NoError(t, err)

	assert.Equal(t, "['--flag', 'two words', '$HOME'] SOME INPUT\n", result.Output)
}

func TestRunScrubsEnvironment(t *testing.T) {
	t.Setenv("SCRIPTRUN_SECRET_FOR_TEST", "do-not-leak")
	s := spec(t, "python", "import os\nprint(sorted(os.environ))\nprint(os.getcwd() == os.environ['HOME'])")

	result, err := newTestRunner(t, 1<<20).Run(context.Background(), s)
	require.NoError(t, err)

	assert.NotContains(t, result.Output, "SCRIPTRUN_SECRET_FOR_TEST")
	assert.NotContains(t, result.Output, "KUBECONFIG")
	assert.Contains(t, result.Output, "True\n", "the script runs in its own directory")
}

func TestRunCapsOutput(t *testing.T) {
	s := spec(t, "python", "import sys\nwhile True: sys.stdout.write('x' * 65536)")
	s.Timeout = 2 * time.Second

	result, err := newTestRunner(t, 1000).Run(context.Background(), s)
	require.NoError(t, err)

	assert.Len(t, result.Output, 1000)
	assert.True(t, result.OutputTruncated)
	assert.Equal(t, run.StatusTimedOut, result.Status)
}

func TestRunKeepsOutputBeforeKill(t *testing.T) {
	s := spec(t, "python", "import sys, time\nsys.stdout.write('no newline before the kill')\ntime.sleep(60)")
	s.Timeout = time.Second

	result, err := newTestRunner(t, 1<<20).Run(context.Background(), s)
	require.NoError(t, err)

	assert.Equal(t, run.StatusTimedOut, result.Status)
	assert.Equal(t, "no newline before the kill", result.Output)
}

func TestRunReportsNonUTF8Output(t *testing.T) {
	s := spec(t, "python", "import sys\nsys.stdout.buffer.write(b'ok \\xff\\xfe end')")

	result, err := newTestRunner(t, 1<<20).Run(context.Background(), s)
	require.NoError(t, err)

	assert.Equal(t, "ok \uFFFD end", result.Output, "a run of invalid bytes becomes one U+FFFD")
	assert.Equal(t, "b2sg//4gZW5k", result.OutputBase64)
}

func TestRunKillsProcessGroupOnTimeout(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "child-alive")
	script := "import subprocess, sys\n" +
		"subprocess.Popen(['sh', '-c', 'sleep 3; touch " + marker + "'])\n" +
		"while True: pass"
	s := spec(t, "python", script)
	s.Timeout = time.Second

	result, err := newTestRunner(t, 1<<20).Run(context.Background(), s)
	require.NoError(t, err)
	require.Equal(t, run.StatusTimedOut, result.Status)

	time.Sleep(3 * time.Second)
	_, statErr := os.Stat(marker)
	assert.True(t, os.IsNotExist(statErr), "the script's child was killed with it")
}

func TestRunRemovesItsDirectory(t *testing.T) {
	runner := newTestRunner(t, 1<<20)
	_, err := runner.Run(context.Background(), spec(t, "python", "open('leftover', 'w').write('x')"))
	require.NoError(t, err)

	entries, err := os.ReadDir(runner.opts.TempDir)
	require.NoError(t, err)
	assert.Empty(t, entries)
}

func TestRunDeduplicatesConcurrentDeliveries(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "runs")
	s := spec(t, "python", "import time\nopen('"+marker+"', 'a').write('x')\ntime.sleep(0.5)\nprint(time.time())")
	runner := newTestRunner(t, 1<<20)

	const deliveries = 10
	results := make([]run.Result, deliveries)
	errs := make([]error, deliveries)
	var wg sync.WaitGroup
	for i := range deliveries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = runner.Run(context.Background(), s)
		}()
	}
	wg.Wait()

	for i := range deliveries {
		require.NoError(t, errs[i])
		assert.Equal(t, results[0], results[i], "delivery %d", i)
	}
	runs, err := os.ReadFile(marker)
	require.NoError(t, err)
	assert.Equal(t, "x", string(runs), "the script ran once")

	again, err := runner.Run(context.Background(), s)
	require.NoError(t, err)
	assert.Equal(t, results[0], again, "a later redelivery gets the remembered result")
}

func TestRunRejectsReusedRequestID(t *testing.T) {
	runner := newTestRunner(t, 1<<20)
	first := spec(t, "python", "print(1)")
	_, err := runner.Run(context.Background(), first)
	require.NoError(t, err)

	second := first
	second.Script = "print(2)"
	second.Digest = run.Digest(run.Request{Script: second.Script})
	result, err := runner.Run(context.Background(), second)
	require.NoError(t, err)

	assert.Equal(t, run.StatusRejected, result.Status)
	assert.Contains(t, result.Message, "already used")
}

func TestRunReturnsWhenSenderGivesUp(t *testing.T) {
	s := spec(t, "python", "import time\ntime.sleep(2)\nprint('done')")
	runner := newTestRunner(t, 1<<20)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()

	_, err := runner.Run(ctx, s)
	require.ErrorIs(t, err, run.ErrUnavailable)

	result, err := runner.Run(context.Background(), s)
	require.NoError(t, err)
	assert.Equal(t, "done\n", result.Output, "the run went on for the redelivery")
}

func TestRunMissingRuntime(t *testing.T) {
	s := spec(t, "python", "print(1)")
	s.Runtime.LocalCommand = []string{"scriptrun-no-such-runtime"}

	_, err := newTestRunner(t, 1<<20).Run(context.Background(), s)

	require.ErrorIs(t, err, run.ErrInternal)
	assert.Contains(t, err.Error(), "scriptrun-no-such-runtime")
	assert.True(t, strings.Contains(err.Error(), "localCommand"), "the error names the fix")
}

func TestCloseKillsRunningScripts(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "survived")
	s := spec(t, "python", "import time\ntime.sleep(3)\nopen('"+marker+"', 'w').write('x')")
	runner := newTestRunner(t, 1<<20)
	done := make(chan run.Result, 1)
	go func() {
		result, _ := runner.Run(context.Background(), s)
		done <- result
	}()
	time.Sleep(500 * time.Millisecond)

	require.NoError(t, runner.Close())
	result := <-done

	assert.Equal(t, run.StatusFailed, result.Status, "the killed script reports its signal")
	require.NotNil(t, result.ExitCode)
	assert.Equal(t, 137, *result.ExitCode)
	time.Sleep(3 * time.Second)
	_, err := os.Stat(marker)
	assert.True(t, os.IsNotExist(err), "the script did not outlive Close")

	_, err = runner.Run(context.Background(), spec(t, "python", "print(1)"))
	assert.ErrorIs(t, err, run.ErrShuttingDown)
}

func TestRunThrottlesPastMaxRunning(t *testing.T) {
	runner := NewRunner(Options{MaxOutputBytes: 100, Remember: time.Minute, MaxRemembered: 10, MaxRunning: 1, TempDir: t.TempDir()})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := runner.Run(ctx, spec(t, "python", "import time\ntime.sleep(2)"))
	require.ErrorIs(t, err, run.ErrUnavailable, "the sender gave up, the script goes on")

	_, err = runner.Run(context.Background(), spec(t, "python", "print(1)"))

	require.ErrorIs(t, err, run.ErrThrottled)
	assert.Contains(t, err.Error(), "SCRIPTRUN_MAX_IN_FLIGHT")
	require.NoError(t, runner.Close())
}
