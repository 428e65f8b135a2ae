//go:build e2e

// Package e2e contains the end-to-end tests, which run against the project's own
// single-node cluster (test/cluster). Run them with `make e2e`, which starts
// the cluster, sets the SCRIPTRUN_E2E_* variables below and runs go test
// inside the cluster's network namespace, where the API server listens.
package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	watchtools "k8s.io/client-go/tools/watch"
	"sigs.k8s.io/yaml"
)

// Environment variables that test/cluster/e2e.sh sets.
const (
	// envKubeconfig is the cluster admin's kubeconfig. Required: the tests
	// never fall back to ~/.kube, $KUBECONFIG or in-cluster configuration,
	// so they cannot touch any other cluster.
	envKubeconfig = "SCRIPTRUN_E2E_KUBECONFIG"
	// envKubectl is the kubectl built for the cluster, for tests that need
	// the command line. Pass it --kubeconfig explicitly. e2e.sh sets
	// KUBECACHEDIR so that it writes no cache under ~/.kube.
	envKubectl = "SCRIPTRUN_E2E_KUBECTL"
	// envReceiverImage is the image with /usr/local/bin/receiver (the
	// entrypoint) and /usr/local/bin/sweeper, already in the node's
	// containerd. Empty while ./cmd/receiver does not exist.
	envReceiverImage = "SCRIPTRUN_E2E_RECEIVER_IMAGE"
	envPythonImage   = "SCRIPTRUN_E2E_PYTHON_IMAGE"
	envNodeImage     = "SCRIPTRUN_E2E_NODE_IMAGE"
	envNodeName      = "SCRIPTRUN_E2E_NODE_NAME"
)

// maxLogBytes caps each container log that a test reads or dumps.
const maxLogBytes = 64 << 10

// Cluster is the test cluster as the environment describes it.
type Cluster struct {
	Config        *rest.Config
	Client        kubernetes.Interface
	Kubectl       string
	NodeName      string
	PythonImage   string
	NodeImage     string
	ReceiverImage string
}

// cluster is set by TestMain before any test runs.
var cluster *Cluster

func TestMain(m *testing.M) {
	loaded, err := loadCluster()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\nRun the suite with `make e2e`, which starts the test cluster and sets %s.\n",
			err, envKubeconfig)
		os.Exit(2)
	}
	cluster = loaded
	os.Exit(m.Run())
}

func loadCluster() (*Cluster, error) {
	path := os.Getenv(envKubeconfig)
	if path == "" {
		return nil, fmt.Errorf("%s is not set", envKubeconfig)
	}
	config, err := restConfigFromFile(path)
	if err != nil {
		return nil, err
	}
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		return nil, fmt.Errorf("creating a clientset from %s: %w", path, err)
	}
	return &Cluster{
		Config:        config,
		Client:        client,
		Kubectl:       os.Getenv(envKubectl),
		NodeName:      envOrDefault(envNodeName, "scriptrun-e2e-node"),
		PythonImage:   envOrDefault(envPythonImage, "ghcr.io/scriptrun/runtime-python:0.1.0"),
		NodeImage:     envOrDefault(envNodeImage, "ghcr.io/scriptrun/runtime-node:0.1.0"),
		ReceiverImage: os.Getenv(envReceiverImage),
	}, nil
}

// restConfigFromFile builds a client configuration from the kubeconfig at
// path alone. Unlike clientcmd's default loading rules it never reads
// $KUBECONFIG or ~/.kube/config.
func restConfigFromFile(path string) (*rest.Config, error) {
	kubeconfig, err := clientcmd.LoadFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading kubeconfig %s: %w", path, err)
	}
	config, err := clientcmd.NewDefaultClientConfig(*kubeconfig, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("invalid kubeconfig %s: %w", path, err)
	}
	// Tests create objects in bursts, and client-go's default of 5 requests
	// per second would make them wait on the client, not on the cluster.
	config.QPS = 50
	config.Burst = 100
	return config, nil
}

func envOrDefault(name, fallback string) string {
	if value := os.Getenv(name); value != "" {
		return value
	}
	return fallback
}

// testContext returns a context that ends after timeout or when the test
// ends, whichever comes first.
func testContext(t testing.TB, timeout time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return ctx
}

var invalidNameCharacters = regexp.MustCompile(`[^a-z0-9-]+`)

// namespacePrefix turns a test name into the start of a namespace name:
// lowercase, DNS-label characters only, short enough to leave room for the
// random suffix that generateName adds.
func namespacePrefix(testName string) string {
	prefix := invalidNameCharacters.ReplaceAllString(strings.ToLower(testName), "-")
	prefix = strings.Trim(prefix, "-")
	if len(prefix) > 40 {
		prefix = strings.TrimRight(prefix[:40], "-")
	}
	return "e2e-" + prefix + "-"
}

// NewNamespace creates a namespace for the test, with the given labels (for
// example Pod Security Admission levels), and returns its name. When the test
// ends, a failed test first logs the namespace's Jobs, pods, ConfigMaps,
// events and container logs; then the namespace is deleted without waiting.
// Cleanups run last-registered first, so the dump shows what remains after
// the cleanups that the test registered later.
func NewNamespace(t *testing.T, labels map[string]string) string {
	t.Helper()
	ctx := testContext(t, 30*time.Second)
	namespace, err := cluster.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: namespacePrefix(t.Name()),
			Labels:       labels,
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err, "creating the test namespace")
	name := namespace.Name

	t.Cleanup(func() {
		cleanupCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if t.Failed() {
			DumpNamespace(cleanupCtx, t, name)
		}
		err := cluster.Client.CoreV1().Namespaces().Delete(cleanupCtx, name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Logf("deleting namespace %s: %v", name, err)
		}
	})
	return name
}

// DumpNamespace logs the Jobs, pods and ConfigMaps in namespace as YAML,
// its events in time order, and the logs of every container (up to
// maxLogBytes each). Errors are logged, not returned: it runs on the way out
// of a failed test.
func DumpNamespace(ctx context.Context, t *testing.T, namespace string) {
	t.Helper()
	client := cluster.Client
	t.Logf("==== dump of namespace %s", namespace)

	jobs, err := client.BatchV1().Jobs(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Logf("listing jobs: %v", err)
	} else {
		for i := range jobs.Items {
			logObject(t, "job", &jobs.Items[i])
		}
	}

	configMaps, err := client.CoreV1().ConfigMaps(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Logf("listing configmaps: %v", err)
	} else {
		for i := range configMaps.Items {
			if configMaps.Items[i].Name != "kube-root-ca.crt" {
				logObject(t, "configmap", &configMaps.Items[i])
			}
		}
	}

	pods, err := client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Logf("listing pods: %v", err)
	} else {
		for i := range pods.Items {
			pod := &pods.Items[i]
			logObject(t, "pod", pod)
			for _, container := range pod.Spec.Containers {
				logs, err := PodLogs(ctx, namespace, pod.Name, container.Name)
				if err != nil {
					t.Logf("logs of pod %s container %s: %v", pod.Name, container.Name, err)
					continue
				}
				t.Logf("---- logs of pod %s container %s:\n%s", pod.Name, container.Name, logs)
			}
		}
	}

	events, err := client.CoreV1().Events(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Logf("listing events: %v", err)
	} else {
		logEvents(t, events.Items)
	}
	t.Logf("==== end of dump of namespace %s", namespace)
}

func logObject(t *testing.T, kind string, object metav1.Object) {
	t.Helper()
	object.SetManagedFields(nil)
	data, err := yaml.Marshal(object)
	if err != nil {
		t.Logf("encoding %s %s: %v", kind, object.GetName(), err)
		return
	}
	t.Logf("---- %s %s:\n%s", kind, object.GetName(), data)
}

func logEvents(t *testing.T, events []corev1.Event) {
	t.Helper()
	// Stable, because most events carry whole seconds only, and the API
	// lists them in creation order.
	sort.SliceStable(events, func(i, j int) bool {
		return eventTime(events[i]).Before(eventTime(events[j]))
	})
	var lines strings.Builder
	for _, event := range events {
		fmt.Fprintf(&lines, "%s %s %s/%s %s: %s\n",
			eventTime(event).Format(time.RFC3339), event.Type, event.InvolvedObject.Kind,
			event.InvolvedObject.Name, event.Reason, event.Message)
	}
	t.Logf("---- events:\n%s", lines.String())
}

// eventTime returns the most precise time an event carries: the kubelet and
// controllers fill in different fields.
func eventTime(event corev1.Event) time.Time {
	switch {
	case !event.EventTime.IsZero():
		return event.EventTime.Time
	case !event.LastTimestamp.IsZero():
		return event.LastTimestamp.Time
	default:
		return event.CreationTimestamp.Time
	}
}

// PodLogs reads the log of one container through the API server (pods/log),
// at most maxLogBytes of it.
func PodLogs(ctx context.Context, namespace, pod, container string) (string, error) {
	limit := int64(maxLogBytes)
	stream, err := cluster.Client.CoreV1().Pods(namespace).
		GetLogs(pod, &corev1.PodLogOptions{Container: container, LimitBytes: &limit}).
		Stream(ctx)
	if err != nil {
		return "", fmt.Errorf("opening logs of pod %s/%s container %s: %w", namespace, pod, container, err)
	}
	defer stream.Close()

	data, err := io.ReadAll(io.LimitReader(stream, limit))
	if err != nil {
		return "", fmt.Errorf("reading logs of pod %s/%s container %s: %w", namespace, pod, container, err)
	}
	return string(data), nil
}

// jobFinished reports whether a Job has reached a final state: its Complete
// or Failed condition is True.
func jobFinished(job *batchv1.Job) bool {
	for _, condition := range job.Status.Conditions {
		if condition.Status != corev1.ConditionTrue {
			continue
		}
		if condition.Type == batchv1.JobComplete || condition.Type == batchv1.JobFailed {
			return true
		}
	}
	return false
}

// WaitForJobFinished watches the Job until jobFinished holds and returns the
// Job as last seen. It fails the test when ctx ends first.
func WaitForJobFinished(ctx context.Context, t *testing.T, namespace, name string) *batchv1.Job {
	t.Helper()
	jobs := cluster.Client.BatchV1().Jobs(namespace)
	byName := fields.OneTermEqualSelector("metadata.name", name).String()
	listWatch := &cache.ListWatch{
		ListFunc: func(options metav1.ListOptions) (runtime.Object, error) {
			options.FieldSelector = byName
			return jobs.List(ctx, options)
		},
		WatchFunc: func(options metav1.ListOptions) (watch.Interface, error) {
			options.FieldSelector = byName
			return jobs.Watch(ctx, options)
		},
	}

	event, err := watchtools.UntilWithSync(ctx, listWatch, &batchv1.Job{}, nil,
		func(event watch.Event) (bool, error) {
			if event.Type == watch.Deleted {
				return false, fmt.Errorf("job %s/%s was deleted before it finished", namespace, name)
			}
			job, ok := event.Object.(*batchv1.Job)
			return ok && jobFinished(job), nil
		})
	require.NoError(t, err, "waiting for job %s/%s to finish", namespace, name)
	return event.Object.(*batchv1.Job)
}

// JobPods lists the pods that the Job controller created for the Job.
func JobPods(ctx context.Context, t *testing.T, namespace, jobName string) []corev1.Pod {
	t.Helper()
	pods, err := cluster.Client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{
		LabelSelector: batchv1.JobNameLabel + "=" + jobName,
	})
	require.NoError(t, err, "listing pods of job %s/%s", namespace, jobName)
	return pods.Items
}
