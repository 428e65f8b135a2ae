package kube

import (
	"context"

	corev1 "k8s.io/api/core/v1"

	"github.com/scriptrun/scriptrun/function/run"
)

// readOutput reads the script container's log through pods/log, without
// following, asking the kubelet for at most max+1 bytes and keeping at most
// max.
func (r *Runner) readOutput(ctx context.Context, pod *corev1.Pod, max int) ([]byte, bool, error) {
	limit := int64(max) + 1
	stream, err := r.client.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{
		Container:  ContainerName,
		LimitBytes: &limit,
	}).Stream(ctx)
	if err != nil {
		return nil, false, err
	}
	defer stream.Close()
	return run.ReadCapped(stream, max)
}
