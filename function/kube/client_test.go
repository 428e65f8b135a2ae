package kube

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const serviceAccountToken = "/var/run/secrets/kubernetes.io/serviceaccount/token"

// unsetenv unsets key for the test and restores it afterwards.
func unsetenv(t *testing.T, key string) {
	t.Helper()
	t.Setenv(key, "")
	require.NoError(t, os.Unsetenv(key))
}

func TestRESTConfigNotConfigured(t *testing.T) {
	if _, err := os.Stat(serviceAccountToken); err == nil {
		t.Skip("a service account token is mounted, so in-cluster configuration exists")
	}
	tests := []struct {
		name        string
		serviceHost string // empty means unset
		kubeconfig  string // KUBECONFIG; empty means unset
	}{
		{name: "service host unset"},
		{name: "service host set without a token", serviceHost: "10.96.0.1"},
		{name: "KUBECONFIG set but no path given", kubeconfig: writeKubeconfig(t, t.TempDir(), "https://127.0.0.1:6443", "")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			unsetenv(t, "KUBERNETES_SERVICE_HOST")
			if tt.serviceHost != "" {
				t.Setenv("KUBERNETES_SERVICE_HOST", tt.serviceHost)
			}
			unsetenv(t, "KUBECONFIG")
			if tt.kubeconfig != "" {
				t.Setenv("KUBECONFIG", tt.kubeconfig)
			}

			cfg, err := RESTConfig("", 5, 10)

			assert.ErrorIs(t, err, ErrNotConfigured)
			assert.Nil(t, cfg)
			assert.False(t, InCluster())
		})
	}
}

// writeKubeconfig writes a kubeconfig for server into dir, with a token user
// and, when caFile is not empty, that certificate-authority path as written.
func writeKubeconfig(t *testing.T, dir, server, caFile string) string {
	t.Helper()
	cluster := "    server: " + server + "\n"
	if caFile != "" {
		cluster += "    certificate-authority: " + caFile + "\n"
	}
	body := `apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
` + cluster + `users:
- name: test
  user:
    token: test-token
contexts:
- name: test
  context:
    cluster: test
    user: test
current-context: test
`
	path := filepath.Join(dir, "kubeconfig")
	require.NoError(t, os.WriteFile(path, []byte(body), 0o600))
	return path
}

// plantDecoys points KUBECONFIG and KUBERNETES_MASTER at another server and
// puts an invalid ~/.kube/config under a temporary HOME, so that reading any
// of them shows in the result or as an error.
//
// NOTE: clientcmd derives its ~/.kube/config path from HOME when the package
// is initialized, so the HOME decoy only catches code that reads HOME at call
// time. KUBECONFIG and KUBERNETES_MASTER are read at call time.
func plantDecoys(t *testing.T) {
	t.Helper()
	home := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(home, ".kube"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(home, ".kube", "config"), []byte("decoy: [not yaml"), 0o600))
	t.Setenv("HOME", home)
	t.Setenv("KUBECONFIG", writeKubeconfig(t, t.TempDir(), "https://decoy-kubeconfig.invalid:6443", ""))
	t.Setenv("KUBERNETES_MASTER", "https://decoy-master.invalid:6443")
	unsetenv(t, "KUBERNETES_SERVICE_HOST")
}

func TestRESTConfigFromFile(t *testing.T) {
	tests := []struct {
		name     string
		relative bool // pass the path relative to the working directory
	}{
		{name: "absolute path"},
		{name: "relative path", relative: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plantDecoys(t)
			dir := t.TempDir()
			caFile := filepath.Join(dir, "ca.crt")
			require.NoError(t, os.WriteFile(caFile, []byte("not parsed until a request is made\n"), 0o600))
			path := writeKubeconfig(t, dir, "https://127.0.0.1:6443", "ca.crt")
			if tt.relative {
				t.Chdir(dir)
				path = "kubeconfig"
			} else {
				// Relative paths inside the file must not depend on the
				// working directory.
				t.Chdir(t.TempDir())
			}

			cfg, err := RESTConfig(path, 5, 10)

			require.NoError(t, err)
			assert.Equal(t, "https://127.0.0.1:6443", cfg.Host)
			assert.Equal(t, "test-token", cfg.BearerToken)
			assert.True(t, samePath(t, cfg.CAFile, caFile), "CAFile %q is not the absolute path of %q", cfg.CAFile, caFile)
			assert.Equal(t, float32(5), cfg.QPS)
			assert.Equal(t, 10, cfg.Burst)
			assert.Equal(t, "scriptrun", cfg.UserAgent)
		})
	}
}

// samePath reports whether a and b name the same existing file, whichever
// symlinks the temporary directory goes through.
func samePath(t *testing.T, a, b string) bool {
	t.Helper()
	resolvedA, err := filepath.EvalSymlinks(a)
	require.NoError(t, err)
	resolvedB, err := filepath.EvalSymlinks(b)
	require.NoError(t, err)
	return filepath.IsAbs(a) && resolvedA == resolvedB
}

func TestRESTConfigFileErrors(t *testing.T) {
	dir := t.TempDir()
	invalid := filepath.Join(dir, "invalid")
	require.NoError(t, os.WriteFile(invalid, []byte("clusters: [not yaml"), 0o600))
	noContext := filepath.Join(dir, "no-context")
	require.NoError(t, os.WriteFile(noContext, []byte("apiVersion: v1\nkind: Config\n"), 0o600))
	missingCA := writeKubeconfig(t, t.TempDir(), "https://127.0.0.1:6443", "missing-ca.crt")

	tests := []struct {
		name      string
		path      string
		wantErr   string
		wantErrIs error
	}{
		{name: "nonexistent file", path: filepath.Join(dir, "missing"), wantErrIs: fs.ErrNotExist},
		{name: "invalid YAML", path: invalid},
		{name: "no current context", path: noContext},
		{name: "missing certificate authority", path: missingCA, wantErr: filepath.Join(filepath.Dir(missingCA), "missing-ca.crt")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plantDecoys(t)

			cfg, err := RESTConfig(tt.path, 5, 10)

			require.Error(t, err)
			assert.Nil(t, cfg)
			assert.Contains(t, err.Error(), tt.path, "the error must name the file")
			assert.NotContains(t, err.Error(), "decoy")
			if tt.wantErr != "" {
				assert.Contains(t, err.Error(), tt.wantErr)
			}
			if tt.wantErrIs != nil {
				assert.ErrorIs(t, err, tt.wantErrIs)
			}
		})
	}
}
