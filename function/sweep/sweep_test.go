package sweep

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/scriptrun/scriptrun/function/kube"
)

const namespace = "runs"

var now = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)

func configMap(name, runID string, age time.Duration, owner string) *corev1.ConfigMap {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
		Name: name, Namespace: namespace, UID: types.UID("uid-" + name),
		CreationTimestamp: metav1.NewTime(now.Add(-age)),
		Labels:            map[string]string{kube.AppLabel: kube.AppValue},
	}}
	if runID != "" {
		cm.Labels[kube.RunIDLabel] = runID
	}
	if owner != "" {
		cm.OwnerReferences = []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: owner}}
	}
	return cm
}

func job(name string, condition batchv1.JobConditionType) *batchv1.Job {
	j := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}}
	if condition != "" {
		j.Status.Conditions = []batchv1.JobCondition{{Type: condition, Status: corev1.ConditionTrue}}
	}
	return j
}

func remaining(t *testing.T, client *fake.Clientset) []string {
	t.Helper()
	list, err := client.CoreV1().ConfigMaps(namespace).List(context.Background(), metav1.ListOptions{})
	require.NoError(t, err)
	var names []string
	for _, cm := range list.Items {
		names = append(names, cm.Name)
	}
	return names
}

func TestSweepDeletesOnlyStaleConfigMaps(t *testing.T) {
	objects := []runtime.Object{
		configMap("young-no-job", "a", time.Minute, ""),
		configMap("old-no-job", "b", time.Hour, ""),
		configMap("old-owner-gone", "", time.Hour, "job-gone"),
		configMap("old-owner-running", "", time.Hour, "job-running"),
		job("job-running", ""),
		configMap("old-owner-complete", "", time.Hour, "job-complete"),
		job("job-complete", batchv1.JobComplete),
		configMap("old-owner-failed", "", time.Hour, "job-failed"),
		job("job-failed", batchv1.JobFailed),
		configMap("old-running-by-label", "c", time.Hour, ""),
		job(kube.JobName("c"), ""),
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "unlabelled", Namespace: namespace,
			CreationTimestamp: metav1.NewTime(now.Add(-time.Hour))}},
	}
	client := fake.NewClientset(objects...)

	report, err := New(client, Options{Namespace: namespace, MinAge: 10 * time.Minute, Now: func() time.Time { return now }}).
		Sweep(context.Background())

	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"old-no-job", "old-owner-gone", "old-owner-complete", "old-owner-failed"}, report.Deleted)
	assert.Equal(t, 3, report.Kept)
	assert.ElementsMatch(t, []string{"young-no-job", "old-owner-running", "old-running-by-label", "unlabelled"}, remaining(t, client))
}

func TestSweepDryRunDeletesNothing(t *testing.T) {
	client := fake.NewClientset(configMap("old", "a", time.Hour, ""))

	report, err := New(client, Options{Namespace: namespace, MinAge: time.Minute, DryRun: true, Now: func() time.Time { return now }}).
		Sweep(context.Background())

	require.NoError(t, err)
	assert.Equal(t, []string{"old"}, report.Deleted)
	assert.Equal(t, []string{"old"}, remaining(t, client))
}

func TestSweepReturnsAPIErrors(t *testing.T) {
	tests := []struct {
		name     string
		verb     string
		resource string
		wantText string
	}{
		{"list fails", "list", "configmaps", "listing configmaps in runs"},
		{"get job fails", "get", "jobs", "getting job runs/"},
		{"delete fails", "delete", "configmaps", "deleting configmap runs/old"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := fake.NewClientset(configMap("old", "a", time.Hour, ""))
			client.PrependReactor(tt.verb, tt.resource, func(k8stesting.Action) (bool, runtime.Object, error) {
				return true, nil, apierrors.NewServiceUnavailable("etcd is down")
			})

			_, err := New(client, Options{Namespace: namespace, MinAge: time.Minute, Now: func() time.Time { return now }}).
				Sweep(context.Background())

			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantText)
		})
	}
}

func TestSweepSparesConfigMapRecreatedMeanwhile(t *testing.T) {
	client := fake.NewClientset(configMap("old", "a", time.Hour, ""))
	client.PrependReactor("delete", "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "configmaps"}, "old", nil)
	})

	report, err := New(client, Options{Namespace: namespace, MinAge: time.Minute, Now: func() time.Time { return now }}).
		Sweep(context.Background())

	require.NoError(t, err)
	assert.Empty(t, report.Deleted)
}
