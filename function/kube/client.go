package kube

import (
	"errors"
	"fmt"
	"os"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// ErrNotConfigured means neither a kubeconfig nor in-cluster config is set.
var ErrNotConfigured = errors.New("no Kubernetes configuration: set KUBECONFIG or --kubeconfig, or run in a pod")

// InCluster reports whether the process runs in a pod with a ServiceAccount
// token mounted.
func InCluster() bool {
	if os.Getenv("KUBERNETES_SERVICE_HOST") == "" {
		return false
	}
	_, err := os.Stat("/var/run/secrets/kubernetes.io/serviceaccount/token")
	return err == nil
}

// RESTConfig returns the client configuration from the kubeconfig file at
// path, or in-cluster configuration when path is empty. It never reads
// ~/.kube/config or any file it was not given, and returns ErrNotConfigured
// when neither source exists.
func RESTConfig(path string, qps float32, burst int) (*rest.Config, error) {
	var cfg *rest.Config
	switch {
	case path != "":
		file, err := clientcmd.LoadFromFile(path)
		if err != nil {
			return nil, fmt.Errorf("loading kubeconfig %s: %w", path, err)
		}
		// LoadFromFile leaves relative certificate and key paths relative to
		// the working directory, but kubectl resolves them against the
		// kubeconfig's directory.
		if err := clientcmd.ResolveLocalPaths(file); err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
		}
		cfg, err = clientcmd.NewDefaultClientConfig(*file, &clientcmd.ConfigOverrides{}).ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
		}
	case InCluster():
		var err error
		if cfg, err = rest.InClusterConfig(); err != nil {
			return nil, fmt.Errorf("loading in-cluster config: %w", err)
		}
	default:
		return nil, ErrNotConfigured
	}
	cfg.QPS, cfg.Burst = qps, burst
	cfg.UserAgent = "scriptrun"
	return cfg, nil
}
