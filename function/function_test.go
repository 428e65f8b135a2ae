package function

import (
	"context"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/scriptrun/scriptrun/function/kube"
	"github.com/scriptrun/scriptrun/function/run"
)

func testConfig() Config {
	return Config{
		Port: 8080, Runner: RunnerAuto, Namespace: "runs",
		RequestType: "run.requested", ReplyType: "run.completed", ReplySource: "/test",
		DefaultTimeoutSeconds: 10, MaxTimeoutSeconds: 60, WaitMarginSeconds: 10,
		MaxScriptBytes: 1000, MaxStdinBytes: 100, MaxOutputBytes: 1000, MaxInFlight: 2,
		JobTTLSeconds: 60, ShutdownGraceSeconds: 5, KubeQPS: 1, KubeBurst: 1, LogLevel: "info",
	}
}

func TestAutoRunnerNeverGuessesKubernetes(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("HOME", t.TempDir())

	f := NewWithConfig(testConfig())
	useKube, err := f.wantsKubernetes()

	require.NoError(t, err)
	assert.False(t, useKube, "without a kubeconfig or a pod, auto means local")
}

func TestKubernetesRunnerNeedsConfiguration(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	cfg := testConfig()
	cfg.Runner = RunnerKubernetes

	err := NewWithConfig(cfg).Start(context.Background(), nil)

	require.ErrorIs(t, err, kube.ErrNotConfigured)
	assert.Contains(t, err.Error(), "SCRIPTRUN_RUNNER=kubernetes")
}

func TestStartRejectsBadRuntimeTable(t *testing.T) {
	cfg := testConfig()
	cfg.Runtimes = "/nonexistent/runtimes.yaml"

	err := NewWithConfig(cfg).Start(context.Background(), nil)

	require.Error(t, err)
	assert.Contains(t, err.Error(), "/nonexistent/runtimes.yaml")
}

func TestHandleWhileDrainingIsRetryable(t *testing.T) {
	cfg := testConfig()
	cfg.Runner = RunnerLocal
	f := NewWithConfig(cfg)
	require.NoError(t, f.Start(context.Background(), nil))
	f.Drain()

	e := event.New()
	e.SetID("1")
	e.SetSource("/t")
	e.SetType("run.requested")
	require.NoError(t, e.SetData(event.ApplicationJSON, map[string]string{"language": "python", "script": "print(1)"}))
	_, err := f.Handle(context.Background(), e)

	require.ErrorIs(t, err, run.ErrShuttingDown)
	assert.Equal(t, 503, HTTPStatus(err))
	ready, _ := f.Ready(context.Background())
	assert.False(t, ready, "a draining receiver is not ready")
}

func TestRejectedReplyIsDeterministic(t *testing.T) {
	cfg := testConfig()
	cfg.Runner = RunnerLocal
	f := NewWithConfig(cfg)
	require.NoError(t, f.Start(context.Background(), nil))

	e := event.New()
	e.SetID("same-id")
	e.SetSource("/t")
	e.SetType("run.requested")
	require.NoError(t, e.SetData(event.ApplicationJSON, map[string]string{"language": "cobol", "script": "x"}))

	first, err := f.Handle(context.Background(), e)
	require.NoError(t, err)
	second, err := f.Handle(context.Background(), e)
	require.NoError(t, err)

	assert.Equal(t, first.ID(), second.ID())
	assert.Equal(t, string(first.Data()), string(second.Data()))
	assert.Contains(t, string(first.Data()), `"status":"rejected"`)
}
