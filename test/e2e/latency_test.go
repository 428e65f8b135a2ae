//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/scriptrun/scriptrun/function/kube"
	"github.com/scriptrun/scriptrun/function/run"
)

const trivialPython = "print('ok')"

// BenchmarkTrivialPythonRun compares the latency of one trivial Python run
// through scriptrun with the same ConfigMap and Job created directly. Through
// scriptrun, an event goes over HTTP to the receiver, which creates the
// objects, waits through its informer and reads the log. Directly, the test
// watches the pod until its container terminates. Run it with
// `make e2e-bench`.
func BenchmarkTrivialPythonRun(b *testing.B) {
	b.Run("scriptrun", func(b *testing.B) {
		namespace := benchNamespace(b)
		url := startReceiverForBenchmark(b, namespace)

		b.ResetTimer()
		for i := range b.N {
			reply, err := PostEvent(context.Background(), url, fmt.Sprintf("bench-%d-%d", b.N, i),
				map[string]any{"language": "python", "script": trivialPython})
			if err != nil {
				b.Fatal(err)
			}
			if reply.Result.Status != run.StatusSucceeded || reply.Result.Output != "ok\n" {
				b.Fatalf("run %d: status %d, body %s", i, reply.Status, reply.Body)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/run")
	})

	b.Run("direct-job", func(b *testing.B) {
		namespace := benchNamespace(b)
		tmpl, err := kube.LoadTemplate("")
		if err != nil {
			b.Fatal(err)
		}

		b.ResetTimer()
		for i := range b.N {
			output, err := runDirectJob(context.Background(), namespace, tmpl, fmt.Sprintf("direct-%d-%d", b.N, i))
			if err != nil {
				b.Fatal(err)
			}
			if output != "ok\n" {
				b.Fatalf("run %d: output %q", i, output)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/run")
	})
}

// runDirectJob creates the ConfigMap and the Job from the built-in template
// as scriptrun would, watches the Job's pod until its container terminates,
// and reads the log.
func runDirectJob(ctx context.Context, namespace string, tmpl *kube.Template, id string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	client := cluster.Client
	cmName, jobName := kube.ConfigMapName(id), kube.JobName(id)

	_, err := client.CoreV1().ConfigMaps(namespace).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: cmName},
		Data:       map[string]string{kube.ScriptKey: trivialPython, kube.StdinKey: ""},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	job, err := tmpl.Render(kube.Values{
		JobName: jobName, ConfigMapName: cmName, RequestID: id, Image: cluster.PythonImage,
		FileExtension: "py", RuntimeCommand: []string{"python3", "-u"},
	})
	if err != nil {
		return "", err
	}
	watcher, err := client.CoreV1().Pods(namespace).Watch(ctx, metav1.ListOptions{LabelSelector: "job-name=" + jobName})
	if err != nil {
		return "", err
	}
	defer watcher.Stop()
	if _, err := client.BatchV1().Jobs(namespace).Create(ctx, job, metav1.CreateOptions{}); err != nil {
		return "", err
	}

	for event := range watcher.ResultChan() {
		pod, ok := event.Object.(*corev1.Pod)
		if !ok || event.Type == watch.Deleted {
			continue
		}
		for _, status := range pod.Status.ContainerStatuses {
			if status.State.Terminated != nil {
				return PodLogs(ctx, namespace, pod.Name, kube.ContainerName)
			}
		}
	}
	return "", fmt.Errorf("job %s/%s: watch ended before the container terminated: %w", namespace, jobName, ctx.Err())
}

func benchNamespace(b *testing.B) string {
	b.Helper()
	ctx := context.Background()
	ns, err := cluster.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-bench-"},
	}, metav1.CreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cluster.Client.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
	})
	return ns.Name
}

func startReceiverForBenchmark(b *testing.B, namespace string) string {
	b.Helper()
	cfg := ReceiverConfig(namespace, GrantReceiver(b, namespace, nil))
	cfg.LogLevel = "error"
	return StartReceiver(b, cfg).URL
}
