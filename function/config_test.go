package function

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLoadConfigDefaults(t *testing.T) {
	t.Setenv("KUBECONFIG", "")

	cfg, err := LoadConfig()
	require.NoError(t, err)

	assert.Equal(t, 8080, cfg.Port)
	assert.Equal(t, "", cfg.ListenHost)
	assert.Equal(t, RunnerAuto, cfg.Runner)
	assert.Equal(t, "", cfg.Kubeconfig)
	assert.Equal(t, "scriptrun-runs", cfg.Namespace)
	assert.Equal(t, "run.requested", cfg.RequestType)
	assert.Equal(t, "run.completed", cfg.ReplyType)
	assert.Equal(t, "/scriptrun/receiver", cfg.ReplySource)
	assert.Equal(t, "", cfg.JobTemplate)
	assert.Equal(t, "", cfg.Runtimes)
	assert.Equal(t, 30, cfg.DefaultTimeoutSeconds)
	assert.Equal(t, 300, cfg.MaxTimeoutSeconds)
	assert.Equal(t, 30, cfg.WaitMarginSeconds)
	assert.Equal(t, 524288, cfg.MaxScriptBytes)
	assert.Equal(t, 262144, cfg.MaxStdinBytes)
	assert.Equal(t, 262144, cfg.MaxOutputBytes)
	assert.Equal(t, 64, cfg.MaxInFlight)
	assert.Equal(t, 300, cfg.JobTTLSeconds)
	assert.Equal(t, 30, cfg.ShutdownGraceSeconds)
	assert.Equal(t, float32(50), cfg.KubeQPS)
	assert.Equal(t, 100, cfg.KubeBurst)
	assert.Equal(t, "info", cfg.LogLevel)
}

func TestLoadConfigOverrides(t *testing.T) {
	env := map[string]string{
		"PORT":                              "9090",
		"SCRIPTRUN_LISTEN_HOST":             "::1",
		"SCRIPTRUN_RUNNER":                  "local",
		"KUBECONFIG":                        "/tmp/kc",
		"SCRIPTRUN_NAMESPACE":               "runs",
		"SCRIPTRUN_REQUEST_TYPE":            "com.example.run",
		"SCRIPTRUN_REPLY_TYPE":              "com.example.done",
		"SCRIPTRUN_REPLY_SOURCE":            "/x",
		"SCRIPTRUN_JOB_TEMPLATE":            "/etc/job.yaml",
		"SCRIPTRUN_RUNTIMES":                "/etc/runtimes.yaml",
		"SCRIPTRUN_DEFAULT_TIMEOUT_SECONDS": "10",
		"SCRIPTRUN_MAX_TIMEOUT_SECONDS":     "20",
		"SCRIPTRUN_WAIT_MARGIN_SECONDS":     "5",
		"SCRIPTRUN_MAX_SCRIPT_BYTES":        "1000",
		"SCRIPTRUN_MAX_STDIN_BYTES":         "0",
		"SCRIPTRUN_MAX_OUTPUT_BYTES":        "2000",
		"SCRIPTRUN_MAX_IN_FLIGHT":           "3",
		"SCRIPTRUN_JOB_TTL_SECONDS":         "0",
		"SCRIPTRUN_SHUTDOWN_GRACE_SECONDS":  "7",
		"SCRIPTRUN_KUBE_QPS":                "1.5",
		"SCRIPTRUN_KUBE_BURST":              "2",
		"SCRIPTRUN_LOG_LEVEL":               "debug",
	}
	for k, v := range env {
		t.Setenv(k, v)
	}

	cfg, err := LoadConfig()
	require.NoError(t, err)

	assert.Equal(t, Config{
		Port: 9090, ListenHost: "::1", Runner: "local", Kubeconfig: "/tmp/kc", Namespace: "runs",
		RequestType: "com.example.run", ReplyType: "com.example.done", ReplySource: "/x",
		JobTemplate: "/etc/job.yaml", Runtimes: "/etc/runtimes.yaml",
		DefaultTimeoutSeconds: 10, MaxTimeoutSeconds: 20, WaitMarginSeconds: 5,
		MaxScriptBytes: 1000, MaxStdinBytes: 0, MaxOutputBytes: 2000, MaxInFlight: 3,
		JobTTLSeconds: 0, ShutdownGraceSeconds: 7, KubeQPS: 1.5, KubeBurst: 2, LogLevel: "debug",
	}, cfg)
}

func TestLoadConfigRejects(t *testing.T) {
	tests := []struct {
		name     string
		variable string
		value    string
		wantText string
	}{
		{"port out of range", "PORT", "70000", "PORT=70000 is invalid"},
		{"port not a number", "PORT", "http", "PORT"},
		{"unknown runner", "SCRIPTRUN_RUNNER", "docker", `SCRIPTRUN_RUNNER="docker" is invalid: set auto, local or kubernetes`},
		{"default timeout over maximum", "SCRIPTRUN_DEFAULT_TIMEOUT_SECONDS", "301", "SCRIPTRUN_DEFAULT_TIMEOUT_SECONDS=301"},
		{"script limit past a ConfigMap", "SCRIPTRUN_MAX_SCRIPT_BYTES", "1048576", "both are stored in one ConfigMap"},
		{"zero in-flight cap", "SCRIPTRUN_MAX_IN_FLIGHT", "0", "SCRIPTRUN_MAX_IN_FLIGHT=0"},
		{"unknown log level", "SCRIPTRUN_LOG_LEVEL", "loud", "SCRIPTRUN_LOG_LEVEL"},
		{"empty namespace", "SCRIPTRUN_NAMESPACE", "", "SCRIPTRUN_NAMESPACE is empty"},
		{"namespace with a space", "SCRIPTRUN_NAMESPACE", "my runs", `SCRIPTRUN_NAMESPACE="my runs" is invalid`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(tt.variable, tt.value)

			_, err := LoadConfig()

			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantText)
		})
	}
}

func TestMaxBodyBytesFitsEscapedInput(t *testing.T) {
	cfg := Config{MaxScriptBytes: 100, MaxStdinBytes: 50}
	assert.Equal(t, int64(6*(150+64*4096)+64<<10), cfg.MaxBodyBytes())
}

func TestListenAddress(t *testing.T) {
	tests := []struct {
		name  string
		host  string
		local bool
		want  string
	}{
		{"local runner defaults to loopback", "", true, "127.0.0.1:8080"},
		{"kubernetes runner defaults to every interface", "", false, ":8080"},
		{"explicit host wins", "0.0.0.0", true, "0.0.0.0:8080"},
		{"IPv6 host", "::1", false, "[::1]:8080"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{Port: 8080, ListenHost: tt.host}
			assert.Equal(t, tt.want, cfg.ListenAddress(tt.local))
		})
	}
}
