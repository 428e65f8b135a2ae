//go:build e2e

package e2e

// These tests check the deployment in config/knative on the test cluster.
// Its manifests must apply, and Knative's CRD schemas must accept the
// Service, Broker and Trigger. Run pods, the receiver and the sweeper must
// work under the deployment's namespaces, ServiceAccounts and Roles. Each
// test maps the namespaces that the manifests name to namespaces of its own.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/scriptrun/scriptrun/function/kube"
	"github.com/scriptrun/scriptrun/function/run"
)

const (
	// envServingCRDs is the folder with Knative Serving's CRDs:
	// config/core/300-resources of the Go module knative.dev/serving, which
	// test/cluster/e2e.sh downloads before it enters the network namespace.
	envServingCRDs = "SCRIPTRUN_E2E_SERVING_CRDS"

	// deployConfigDir is the deployment, relative to this package.
	deployConfigDir = "../../config/knative"
	// deployEventingCRDs holds copies of Knative Eventing's Broker and
	// Trigger CRDs, from config/core/resources in the knative/eventing
	// repository.
	deployEventingCRDs = "testdata/crds/eventing"

	// The namespaces that the manifests name.
	deployRunsNamespace   = "scriptrun-runs"
	deploySystemNamespace = "scriptrun-system"

	// deployFieldManager owns the CRDs that the tests install.
	deployFieldManager = "scriptrun-e2e-deploy"
)

var crdResource = schema.GroupVersionResource{
	Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions",
}

// TestDeployManifestsApply applies every kustomization in config/knative with
// a server-side dry run, after installing the Knative CRDs, and checks that
// the CRD schemas reject a Service and a Trigger with invalid fields.
func TestDeployManifestsApply(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, 3*time.Minute)
	deployInstallCRDs(ctx, t)

	// Both namespaces carry the manifest's Pod Security labels, so the API
	// server warns about any pod template that breaks the restricted profile.
	namespaces := map[string]string{
		deployRunsNamespace:   NewNamespace(t, deployNamespaceLabels(t, deployRunsNamespace)),
		deploySystemNamespace: NewNamespace(t, deployNamespaceLabels(t, deploySystemNamespace)),
	}

	t.Run("kustomization", func(t *testing.T) {
		t.Parallel()
		for _, dir := range []string{"base", "func", "."} {
			t.Run(filepath.Join("config/knative", dir), func(t *testing.T) {
				t.Parallel()
				objects := deployRender(ctx, t, filepath.Join(deployConfigDir, dir))
				deployRewriteNamespaces(t, objects, namespaces)

				stdout, stderr, err := deployDryRunApply(ctx, t, objects...)
				require.NoError(t, err, "kubectl apply --dry-run=server:\n%s", stderr)
				if warnings := deployUnexpectedWarnings(stderr); warnings != "" {
					t.Logf("kubectl apply --dry-run=server warnings:\n%s", warnings)
				}
				assert.ElementsMatch(t, deployResourceNames(objects), deployDryRunNames(stdout),
					"objects that kubectl reports as applied (server dry run)")
				assert.NotContains(t, stderr, "PodSecurity", "a pod template breaks the restricted profile")
			})
		}
	})

	t.Run("knative schema", func(t *testing.T) {
		t.Parallel()
		objects := deployRender(ctx, t, deployConfigDir)
		deployRewriteNamespaces(t, objects, namespaces)
		service := deployFind(t, objects, "serving.knative.dev/v1", "Service", "scriptrun-receiver")
		trigger := deployFind(t, objects, "eventing.knative.dev/v1", "Trigger", "scriptrun-run-requested")
		broker := deployFind(t, objects, "eventing.knative.dev/v1", "Broker", "default")

		tests := []struct {
			name   string
			object *unstructured.Unstructured
			// change makes the object invalid; nil applies it as rendered.
			change func(t *testing.T, object map[string]any)
			// wantErrors are parts of kubectl's error output; nil means
			// the dry run must succeed.
			wantErrors []string
		}{
			{name: "service as rendered", object: service},
			{
				name:   "service with unknown container field",
				object: service,
				change: func(t *testing.T, object map[string]any) {
					deploySetContainerField(t, object, "readinesProbe", map[string]any{})
				},
				wantErrors: []string{`unknown field "spec.template.spec.containers[0].readinesProbe"`},
			},
			{
				name:   "service with string containerConcurrency",
				object: service,
				change: func(t *testing.T, object map[string]any) {
					deploySetField(t, object, "32", "spec", "template", "spec", "containerConcurrency")
				},
				wantErrors: []string{"spec.template.spec.containerConcurrency", "must be of type integer"},
			},
			{name: "trigger as rendered", object: trigger},
			{
				name:   "trigger with string retry",
				object: trigger,
				change: func(t *testing.T, object map[string]any) {
					deploySetField(t, object, "5", "spec", "delivery", "retry")
				},
				wantErrors: []string{"spec.delivery.retry", "must be of type integer"},
			},
			{name: "broker as rendered", object: broker},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				object := tt.object.DeepCopy()
				if tt.change != nil {
					tt.change(t, object.Object)
				}

				stdout, stderr, err := deployDryRunApply(ctx, t, object)
				if tt.wantErrors == nil {
					require.NoError(t, err, "kubectl apply --dry-run=server:\n%s", stderr)
					assert.Equal(t, deployResourceNames([]*unstructured.Unstructured{object}), deployDryRunNames(stdout))
					return
				}
				require.Error(t, err, "the API server accepted the invalid %s:\n%s", object.GetKind(), stdout)
				for _, want := range tt.wantErrors {
					assert.Contains(t, stderr, want)
				}
			})
		}
	})
}

// TestDeployRunPodIsolation runs scripts through the receiver in a namespace
// labelled like the deployment's runs namespace (Pod Security restricted
// enforced) and checks from inside each run what the Job template allows.
func TestDeployRunPodIsolation(t *testing.T) {
	t.Parallel()
	namespace := NewNamespace(t, deployNamespaceLabels(t, deployRunsNamespace))
	kubeconfig := GrantReceiver(t, namespace, nil)
	receiver := StartReceiver(t, ReceiverConfig(namespace, kubeconfig))

	tests := []struct {
		name   string
		script string
		stdin  string
		want   string
	}{
		{
			name:   "script reads stdin",
			script: "import sys\nprint(sum(int(word) for word in sys.stdin.read().split()))\n",
			stdin:  "1 2 3",
			want:   "6\n",
		},
		{
			name: "no service account token",
			script: `import os
for path in ["/var/run/secrets/kubernetes.io/serviceaccount/token", "/var/run/secrets/kubernetes.io"]:
    print(path, "exists" if os.path.exists(path) else "absent")
`,
			want: "/var/run/secrets/kubernetes.io/serviceaccount/token absent\n/var/run/secrets/kubernetes.io absent\n",
		},
		{
			name: "writable only under tmp",
			script: `import errno
for path in ["/probe", "/script/probe", "/tmp/probe"]:
    try:
        with open(path, "w") as file:
            file.write("x")
        print(path, "written")
    except OSError as error:
        print(path, errno.errorcode[error.errno])
`,
			want: "/probe EROFS\n/script/probe EROFS\n/tmp/probe written\n",
		},
		{
			// 10.89.0.1:10250 is the kubelet on the node's address. A UDP
			// connect() sends nothing: it only looks up the route to
			// 192.0.2.1 (TEST-NET-1, never assigned to a host).
			name: "no route off the node",
			script: `import errno, socket
def probe(kind, host, port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM)
    sock.settimeout(5)
    try:
        sock.connect((host, port))
        print(kind, host, port, "connected")
    except socket.timeout:
        print(kind, host, port, "timed out")
    except OSError as error:
        print(kind, host, port, errno.errorcode[error.errno])
    finally:
        sock.close()
probe("tcp", "10.89.0.1", 10250)
probe("udp", "192.0.2.1", 9)
`,
			want: "tcp 10.89.0.1 10250 ENETUNREACH\nudp 192.0.2.1 9 ENETUNREACH\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t, 2*time.Minute)
			eventID := "deploy-" + strings.ReplaceAll(tt.name, " ", "-")

			reply, err := PostEvent(ctx, receiver.URL, eventID, run.Request{
				Language: "python", Script: tt.script, Stdin: tt.stdin, TimeoutSeconds: ptr.To(30),
			})
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, reply.Status, "HTTP status; body: %s", reply.Body)
			assert.Equal(t, run.StatusSucceeded, reply.Result.Status, "status; message: %s", reply.Result.Message)
			assert.Equal(t, tt.want, reply.Result.Output)
		})
	}
}

// TestDeployReceiverDeployment runs the receiver in the cluster under the
// deployment's ServiceAccount and Role, sends it one event, and checks that
// the ServiceAccount cannot read Secrets.
func TestDeployReceiverDeployment(t *testing.T) {
	t.Parallel()
	require.NotEmpty(t, cluster.ReceiverImage, "%s is not set: the receiver image was not built", envReceiverImage)
	ctx := testContext(t, 3*time.Minute)
	runsNamespace := NewNamespace(t, deployNamespaceLabels(t, deployRunsNamespace))
	// The receiver's pod uses the node's network namespace (hostNetwork),
	// because pods on the pod network have no route to the API server in
	// the test cluster. The restricted profile forbids hostNetwork, so this
	// namespace has no Pod Security labels. Production runs the receiver on
	// the pod network in scriptrun-system, which enforces restricted.
	systemNamespace := NewNamespace(t, nil)

	objects := deployRender(ctx, t, deployConfigDir)
	deployRewriteNamespaces(t, objects, map[string]string{
		deployRunsNamespace: runsNamespace, deploySystemNamespace: systemNamespace,
	})
	const name = "scriptrun-receiver"
	deployCreate(ctx, t,
		deployFind(t, objects, "v1", "ServiceAccount", name),
		deployFind(t, objects, "rbac.authorization.k8s.io/v1", "Role", name),
		deployFind(t, objects, "rbac.authorization.k8s.io/v1", "RoleBinding", name))

	port := deployFreePort(t)
	podSpec := deployReceiverPodSpec(t, deployFind(t, objects, "serving.knative.dev/v1", "Service", name), runsNamespace, port)
	for _, volume := range podSpec.Volumes {
		if volume.ConfigMap != nil {
			deployCreate(ctx, t, deployFind(t, objects, "v1", "ConfigMap", volume.ConfigMap.Name))
		}
	}

	labels := map[string]string{"app.kubernetes.io/name": "scriptrun", "app.kubernetes.io/component": "receiver"}
	_, err := cluster.Client.AppsV1().Deployments(systemNamespace).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(1)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: podSpec},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err, "creating deployment %s/%s", systemNamespace, name)
	created := time.Now()
	deployWaitAvailable(ctx, t, systemNamespace, name)
	t.Logf("deployment %s/%s available %.1fs after it was created", systemNamespace, name, time.Since(created).Seconds())

	reply, err := PostEvent(ctx, fmt.Sprintf("http://127.0.0.1:%d", port), "deploy-receiver-deployment", run.Request{
		Language: "python", Script: "print('hello from the cluster')\n", TimeoutSeconds: ptr.To(30),
	})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, reply.Status, "HTTP status; body: %s", reply.Body)
	assert.Equal(t, run.StatusSucceeded, reply.Result.Status, "status; message: %s", reply.Result.Message)
	assert.Equal(t, "hello from the cluster\n", reply.Result.Output)

	jobs, err := cluster.Client.BatchV1().Jobs(runsNamespace).List(ctx, metav1.ListOptions{
		LabelSelector: kube.AppLabel + "=" + kube.AppValue,
	})
	require.NoError(t, err)
	assert.Len(t, jobs.Items, 1, "run Jobs in %s", runsNamespace)

	client := deployServiceAccountClient(ctx, t, systemNamespace, name)
	_, err = client.BatchV1().Jobs(runsNamespace).List(ctx, metav1.ListOptions{})
	require.NoError(t, err, "the receiver's ServiceAccount lists Jobs in %s", runsNamespace)
	for _, namespace := range []string{runsNamespace, systemNamespace} {
		_, err := client.CoreV1().Secrets(namespace).List(ctx, metav1.ListOptions{})
		assert.True(t, apierrors.IsForbidden(err), "listing secrets in %s: want Forbidden, got %v", namespace, err)
		_, err = client.CoreV1().Secrets(namespace).Get(ctx, "any", metav1.GetOptions{})
		assert.True(t, apierrors.IsForbidden(err), "getting a secret in %s: want Forbidden, got %v", namespace, err)
	}
}

// TestDeploySweeperJob runs the sweeper CronJob's Job under the deployment's
// ServiceAccount and Role, and checks that it deletes a stale run ConfigMap
// but keeps the ConfigMap of a run still in progress.
func TestDeploySweeperJob(t *testing.T) {
	t.Parallel()
	require.NotEmpty(t, cluster.ReceiverImage, "%s is not set: the image with the sweeper was not built", envReceiverImage)
	ctx := testContext(t, 3*time.Minute)
	runsNamespace := NewNamespace(t, deployNamespaceLabels(t, deployRunsNamespace))
	// The sweeper's pod uses the node's network (hostNetwork), which the
	// restricted profile forbids. See TestDeployReceiverDeployment.
	systemNamespace := NewNamespace(t, nil)

	planted := time.Now()
	stale := deployPlantConfigMap(ctx, t, runsNamespace, "deploy-stale", nil)
	live := deployPlantConfigMap(ctx, t, runsNamespace, "deploy-live", deploySleepingJob(ctx, t, runsNamespace, "deploy-live"))

	objects := deployRender(ctx, t, deployConfigDir)
	deployRewriteNamespaces(t, objects, map[string]string{
		deployRunsNamespace: runsNamespace, deploySystemNamespace: systemNamespace,
	})
	const name = "scriptrun-sweeper"
	deployCreate(ctx, t,
		deployFind(t, objects, "v1", "ServiceAccount", name),
		deployFind(t, objects, "rbac.authorization.k8s.io/v1", "Role", name),
		deployFind(t, objects, "rbac.authorization.k8s.io/v1", "RoleBinding", name))
	job := deploySweeperJob(t, deployFind(t, objects, "batch/v1", "CronJob", name), runsNamespace)

	// --min-age=1s spares ConfigMaps younger than a second. Creation
	// timestamps have whole seconds, so both are old enough 2 s after they
	// were created.
	time.Sleep(time.Until(planted.Add(2 * time.Second)))
	_, err := cluster.Client.BatchV1().Jobs(systemNamespace).Create(ctx, job, metav1.CreateOptions{})
	require.NoError(t, err, "creating job %s/%s", systemNamespace, job.Name)
	created := time.Now()
	finished := WaitForJobFinished(ctx, t, systemNamespace, job.Name)
	t.Logf("sweeper job %s/%s finished %.1fs after it was created", systemNamespace, job.Name, time.Since(created).Seconds())
	assert.Equal(t, int32(1), finished.Status.Succeeded, "succeeded pods")
	assert.Equal(t, int32(0), finished.Status.Failed, "failed pods")

	deleted, summary := deploySweeperLog(ctx, t, systemNamespace, job.Name)
	assert.Equal(t, []string{stale}, deleted, "ConfigMaps in \"Deleted stale ConfigMap\" log lines")
	assert.Equal(t, map[string]any{"deleted": 1.0, "kept": 1.0}, summary, "counts in the \"Sweep finished\" log line")
	_, err = cluster.Client.CoreV1().ConfigMaps(runsNamespace).Get(ctx, stale, metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err), "getting stale configmap %s: want NotFound, got %v", stale, err)
	_, err = cluster.Client.CoreV1().ConfigMaps(runsNamespace).Get(ctx, live, metav1.GetOptions{})
	assert.NoError(t, err, "getting the live run's configmap %s", live)
}

// deployInstallCRDs installs the Knative Eventing and Serving CRDs, waits
// until the API server serves them, and deletes them when the test ends.
func deployInstallCRDs(ctx context.Context, t *testing.T) {
	t.Helper()
	servingDir := os.Getenv(envServingCRDs)
	require.NotEmpty(t, servingDir,
		"%s is not set: run the suite with make e2e, which downloads knative.dev/serving", envServingCRDs)
	var files []string
	for _, dir := range []string{deployEventingCRDs, servingDir} {
		matches, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
		require.NoError(t, err)
		require.NotEmpty(t, matches, "no CRD files in %s", dir)
		files = append(files, matches...)
	}

	client, err := dynamic.NewForConfig(cluster.Config)
	require.NoError(t, err)
	crds := client.Resource(crdResource)
	var names []string
	t.Cleanup(func() {
		cleanupCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, name := range names {
			err := crds.Delete(cleanupCtx, name, metav1.DeleteOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				t.Logf("deleting CRD %s: %v", name, err)
			}
		}
	})
	for _, file := range files {
		data, err := os.ReadFile(file)
		require.NoError(t, err)
		objects, err := deployParseYAML(data)
		require.NoError(t, err, "parsing %s", file)
		for _, crd := range objects {
			require.Equal(t, "CustomResourceDefinition", crd.GetKind(), "an object in %s", file)
			deployWaitCRDNotTerminating(ctx, t, crds, crd.GetName())
			_, err := crds.Apply(ctx, crd.GetName(), crd, metav1.ApplyOptions{FieldManager: deployFieldManager, Force: true})
			require.NoError(t, err, "applying CRD %s from %s", crd.GetName(), file)
			names = append(names, crd.GetName())
		}
	}

	for _, name := range names {
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true,
			func(ctx context.Context) (bool, error) {
				crd, err := crds.Get(ctx, name, metav1.GetOptions{})
				if err != nil {
					return false, err
				}
				return deployCRDEstablished(crd), nil
			})
		require.NoError(t, err, "waiting for CRD %s to be established", name)
	}
}

// deployWaitCRDNotTerminating waits until the CRD name is gone or not being
// deleted, because an earlier run's cleanup may still be deleting it.
func deployWaitCRDNotTerminating(ctx context.Context, t *testing.T, crds dynamic.NamespaceableResourceInterface, name string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 60*time.Second, true,
		func(ctx context.Context) (bool, error) {
			crd, err := crds.Get(ctx, name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return true, nil
			}
			if err != nil {
				return false, err
			}
			return crd.GetDeletionTimestamp() == nil, nil
		})
	require.NoError(t, err, "waiting for the deletion of CRD %s to finish", name)
}

// deployCRDEstablished reports whether the CRD's Established condition is True.
func deployCRDEstablished(crd *unstructured.Unstructured) bool {
	conditions, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
	for _, item := range conditions {
		condition, ok := item.(map[string]any)
		if ok && condition["type"] == "Established" && condition["status"] == "True" {
			return true
		}
	}
	return false
}

// deployNamespaceLabels returns the labels of the namespace name in
// config/knative/base/namespaces.yaml.
func deployNamespaceLabels(t *testing.T, name string) map[string]string {
	t.Helper()
	path := filepath.Join(deployConfigDir, "base", "namespaces.yaml")
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	objects, err := deployParseYAML(data)
	require.NoError(t, err, "parsing %s", path)
	for _, object := range objects {
		if object.GetKind() == "Namespace" && object.GetName() == name {
			require.NotEmpty(t, object.GetLabels(), "labels of namespace %s in %s", name, path)
			return object.GetLabels()
		}
	}
	t.Fatalf("%s has no namespace %s", path, name)
	return nil
}

// deployKubectl runs the cluster's kubectl with args and stdin and returns
// its stdout and stderr.
func deployKubectl(ctx context.Context, t *testing.T, stdin []byte, args ...string) (string, string, error) {
	t.Helper()
	require.NotEmpty(t, cluster.Kubectl, "%s is not set", envKubectl)
	command := exec.CommandContext(ctx, cluster.Kubectl, args...)
	command.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	command.Stdout = &stdout
	command.Stderr = &stderr
	err := command.Run()
	return stdout.String(), stderr.String(), err
}

// deployRender renders the kustomization in dir with kubectl kustomize.
func deployRender(ctx context.Context, t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	stdout, stderr, err := deployKubectl(ctx, t, nil, "kustomize", dir)
	require.NoError(t, err, "kubectl kustomize %s:\n%s", dir, stderr)
	objects, err := deployParseYAML([]byte(stdout))
	require.NoError(t, err, "parsing the output of kubectl kustomize %s", dir)
	require.NotEmpty(t, objects, "kubectl kustomize %s rendered no objects", dir)
	return objects
}

// deployDryRunApply runs kubectl apply --dry-run=server on objects and
// returns kubectl's stdout and stderr. kubectl's default --validate=strict
// makes the API server reject unknown fields.
func deployDryRunApply(ctx context.Context, t *testing.T, objects ...*unstructured.Unstructured) (string, string, error) {
	t.Helper()
	var manifest bytes.Buffer
	for _, object := range objects {
		data, err := yaml.Marshal(object.Object)
		require.NoError(t, err)
		manifest.WriteString("---\n")
		manifest.Write(data)
	}
	kubeconfig := os.Getenv(envKubeconfig)
	return deployKubectl(ctx, t, manifest.Bytes(),
		"--kubeconfig="+kubeconfig, "apply", "--dry-run=server", "-f", "-")
}

// deployParseYAML decodes a stream of YAML documents, skipping empty ones.
func deployParseYAML(data []byte) ([]*unstructured.Unstructured, error) {
	decoder := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objects []*unstructured.Unstructured
	for {
		var object map[string]any
		err := decoder.Decode(&object)
		if errors.Is(err, io.EOF) {
			return objects, nil
		}
		if err != nil {
			return nil, err
		}
		if object != nil {
			objects = append(objects, &unstructured.Unstructured{Object: object})
		}
	}
}

// deployRewriteNamespaces moves objects to the test's namespaces. mapping
// takes each namespace that the manifests name to the test's. It renames
// Namespace objects and rewrites metadata.namespace and the namespaces of
// RoleBinding subjects. It fails the test on a namespace that mapping
// lacks.
func deployRewriteNamespaces(t *testing.T, objects []*unstructured.Unstructured, mapping map[string]string) {
	t.Helper()
	rewrite := func(namespace string) string {
		t.Helper()
		mapped, ok := mapping[namespace]
		require.True(t, ok, "the manifests name namespace %q, which the test does not map", namespace)
		return mapped
	}
	for _, object := range objects {
		if object.GetKind() == "Namespace" {
			object.SetName(rewrite(object.GetName()))
		}
		if namespace := object.GetNamespace(); namespace != "" {
			object.SetNamespace(rewrite(namespace))
		}
		if object.GetKind() != "RoleBinding" {
			continue
		}
		subjects, _, err := unstructured.NestedSlice(object.Object, "subjects")
		require.NoError(t, err)
		for _, item := range subjects {
			subject := item.(map[string]any)
			if namespace, ok := subject["namespace"].(string); ok {
				subject["namespace"] = rewrite(namespace)
			}
		}
		require.NoError(t, unstructured.SetNestedSlice(object.Object, subjects, "subjects"))
	}
}

// deployFind returns the object with the given apiVersion, kind and name.
func deployFind(t *testing.T, objects []*unstructured.Unstructured, apiVersion, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, object := range objects {
		if object.GetAPIVersion() == apiVersion && object.GetKind() == kind && object.GetName() == name {
			return object
		}
	}
	t.Fatalf("the rendered manifests have no %s %s %s", apiVersion, kind, name)
	return nil
}

// deployResourceNames returns the names that kubectl prints for objects:
// the lowercase kind, a dot and the API group unless it is the core group,
// a slash and the name.
func deployResourceNames(objects []*unstructured.Unstructured) []string {
	names := make([]string, 0, len(objects))
	for _, object := range objects {
		kind := strings.ToLower(object.GetKind())
		if group := object.GroupVersionKind().Group; group != "" {
			kind += "." + group
		}
		names = append(names, kind+"/"+object.GetName())
	}
	return names
}

// deployDryRunNames returns the objects in kubectl apply's output lines,
// such as "configmap/x created (server dry run)".
func deployDryRunNames(stdout string) []string {
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		if name, _, ok := strings.Cut(line, " "); ok && strings.HasSuffix(line, "(server dry run)") {
			names = append(names, name)
		}
	}
	return names
}

// deployUnexpectedWarnings returns kubectl's stderr without the warnings
// about the missing last-applied annotation, which kubectl prints because
// the test created the namespaces without kubectl apply.
func deployUnexpectedWarnings(stderr string) string {
	var kept []string
	for _, line := range strings.Split(strings.TrimSpace(stderr), "\n") {
		if line != "" && !strings.Contains(line, "last-applied-configuration annotation") {
			kept = append(kept, line)
		}
	}
	return strings.Join(kept, "\n")
}

// deploySetField sets the field at path in object, failing the test when
// the path crosses a value that is not a map.
func deploySetField(t *testing.T, object map[string]any, value any, path ...string) {
	t.Helper()
	require.NoError(t, unstructured.SetNestedField(object, value, path...), "setting %s", strings.Join(path, "."))
}

// deploySetContainerField sets a field of the first container of a Knative
// Service.
func deploySetContainerField(t *testing.T, service map[string]any, field string, value any) {
	t.Helper()
	path := []string{"spec", "template", "spec", "containers"}
	containers, found, err := unstructured.NestedSlice(service, path...)
	require.NoError(t, err)
	require.True(t, found && len(containers) > 0, "the Service has no containers")
	containers[0].(map[string]any)[field] = value
	require.NoError(t, unstructured.SetNestedSlice(service, containers, path...))
}

// deployCreate creates objects with the admin's credentials.
func deployCreate(ctx context.Context, t *testing.T, objects ...*unstructured.Unstructured) {
	t.Helper()
	discoveryClient, err := discovery.NewDiscoveryClientForConfig(cluster.Config)
	require.NoError(t, err)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(discoveryClient))
	client, err := dynamic.NewForConfig(cluster.Config)
	require.NoError(t, err)
	for _, object := range objects {
		gvk := object.GroupVersionKind()
		mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		require.NoError(t, err, "finding the resource of %s", gvk)
		_, err = client.Resource(mapping.Resource).Namespace(object.GetNamespace()).
			Create(ctx, object, metav1.CreateOptions{})
		require.NoError(t, err, "creating %s %s/%s", object.GetKind(), object.GetNamespace(), object.GetName())
	}
}

// deployFreePort returns a TCP port that is free in this network namespace,
// which the cluster's node shares.
func deployFreePort(t *testing.T) int {
	t.Helper()
	listener, err := net.Listen("tcp", ":0")
	require.NoError(t, err)
	port := listener.Addr().(*net.TCPAddr).Port
	require.NoError(t, listener.Close())
	return port
}

// deployAPIServerAddress returns the host and port of the API server, as
// the admin's kubeconfig names it. Inside the test cluster's network
// namespace both the tests and pods with hostNetwork reach it there.
func deployAPIServerAddress(t *testing.T) (string, string) {
	t.Helper()
	server, err := url.Parse(cluster.Config.Host)
	require.NoError(t, err, "parsing the API server URL %q", cluster.Config.Host)
	require.NotEmpty(t, server.Port(), "the API server URL %q has no port", cluster.Config.Host)
	return server.Hostname(), server.Port()
}

// deployReceiverPodSpec turns the Knative Service's revision template into
// the pod spec of a plain Deployment: the receiver image, the node's
// network, the API server's address from the admin kubeconfig, runs in
// runsNamespace and HTTP on port. The rest (ServiceAccount, environment, resources, probes,
// securityContext, the runtime table's volume) is the Service's.
func deployReceiverPodSpec(t *testing.T, service *unstructured.Unstructured, runsNamespace string, port int) corev1.PodSpec {
	t.Helper()
	template, found, err := unstructured.NestedMap(service.Object, "spec", "template", "spec")
	require.NoError(t, err)
	require.True(t, found, "the Service has no spec.template.spec")
	// Knative's revision fields, which a pod spec lacks.
	delete(template, "containerConcurrency")
	delete(template, "timeoutSeconds")
	var spec corev1.PodSpec
	require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(template, &spec))
	require.Len(t, spec.Containers, 1, "containers of the Service")

	spec.HostNetwork = true
	container := &spec.Containers[0]
	container.Image = cluster.ReceiverImage
	container.ImagePullPolicy = corev1.PullIfNotPresent
	container.Command = []string{"/usr/local/bin/receiver"}
	// With hostNetwork the container port is a port on the node.
	container.Ports = []corev1.ContainerPort{{Name: "http1", ContainerPort: int32(port)}}
	for _, probe := range []*corev1.Probe{container.ReadinessProbe, container.LivenessProbe} {
		require.NotNil(t, probe, "the Service's container lacks a probe")
		require.NotNil(t, probe.HTTPGet, "the Service's probes use httpGet")
		// Knative fills in the port of a probe, but a Deployment needs it set.
		probe.HTTPGet.Port = intstr.FromInt(port)
	}

	host, apiPort := deployAPIServerAddress(t)
	require.Equal(t, "kubernetes", deployEnv(t, container, "SCRIPTRUN_RUNNER"), "SCRIPTRUN_RUNNER of the Service")
	require.Equal(t, deployRunsNamespace, deployEnv(t, container, "SCRIPTRUN_NAMESPACE"), "SCRIPTRUN_NAMESPACE of the Service")
	deploySetEnv(container, "SCRIPTRUN_NAMESPACE", runsNamespace)
	deploySetEnv(container, "PORT", fmt.Sprint(port))
	// client-go's in-cluster configuration reads these two, which the
	// kubelet sets to the kubernetes Service's address otherwise.
	deploySetEnv(container, "KUBERNETES_SERVICE_HOST", host)
	deploySetEnv(container, "KUBERNETES_SERVICE_PORT", apiPort)
	return spec
}

// deployEnv returns the value of the environment variable name of container.
func deployEnv(t *testing.T, container *corev1.Container, name string) string {
	t.Helper()
	for _, env := range container.Env {
		if env.Name == name {
			return env.Value
		}
	}
	t.Fatalf("container %s has no environment variable %s", container.Name, name)
	return ""
}

// deploySetEnv sets the environment variable name of container to value.
func deploySetEnv(container *corev1.Container, name, value string) {
	for i := range container.Env {
		if container.Env[i].Name == name {
			container.Env[i] = corev1.EnvVar{Name: name, Value: value}
			return
		}
	}
	container.Env = append(container.Env, corev1.EnvVar{Name: name, Value: value})
}

// deployWaitAvailable polls the Deployment until one replica is available.
// The receiver's /readyz returns 200 only after its informers have synced.
func deployWaitAvailable(ctx context.Context, t *testing.T, namespace, name string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 2*time.Minute, true,
		func(ctx context.Context) (bool, error) {
			deployment, err := cluster.Client.AppsV1().Deployments(namespace).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			return deployment.Status.AvailableReplicas >= 1, nil
		})
	require.NoError(t, err, "waiting for deployment %s/%s to have an available replica", namespace, name)
}

// deployServiceAccountClient returns a client that authenticates as the
// ServiceAccount namespace/name with a short-lived token.
func deployServiceAccountClient(ctx context.Context, t *testing.T, namespace, name string) kubernetes.Interface {
	t.Helper()
	token, err := cluster.Client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(600))}},
		metav1.CreateOptions{})
	require.NoError(t, err, "requesting a token for serviceaccount %s/%s", namespace, name)
	config := rest.AnonymousClientConfig(cluster.Config)
	config.BearerToken = token.Status.Token
	client, err := kubernetes.NewForConfig(config)
	require.NoError(t, err)
	return client
}

// deployPlantConfigMap creates a run ConfigMap for runID, as the receiver
// does, owned by job when job is not nil, and returns its name.
func deployPlantConfigMap(ctx context.Context, t *testing.T, namespace, runID string, job *batchv1.Job) string {
	t.Helper()
	configMap := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Name:   kube.ConfigMapName(runID),
			Labels: map[string]string{kube.AppLabel: kube.AppValue, kube.RunIDLabel: runID},
		},
		Data: map[string]string{kube.ScriptKey: "print(1)\n", kube.StdinKey: ""},
	}
	if job != nil {
		configMap.OwnerReferences = []metav1.OwnerReference{{
			APIVersion: "batch/v1", Kind: "Job", Name: job.Name, UID: job.UID,
		}}
	}
	_, err := cluster.Client.CoreV1().ConfigMaps(namespace).Create(ctx, configMap, metav1.CreateOptions{})
	require.NoError(t, err, "creating configmap %s/%s", namespace, configMap.Name)
	return configMap.Name
}

// deploySleepingJob creates a run Job for runID whose pod sleeps, so that
// the Job stays unfinished while the test runs.
func deploySleepingJob(ctx context.Context, t *testing.T, namespace, runID string) *batchv1.Job {
	t.Helper()
	labels := map[string]string{kube.AppLabel: kube.AppValue, kube.RunIDLabel: runID}
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: kube.JobName(runID), Labels: labels},
		Spec: batchv1.JobSpec{
			BackoffLimit:          ptr.To(int32(0)),
			ActiveDeadlineSeconds: ptr.To(int64(300)),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					RestartPolicy:                 corev1.RestartPolicyNever,
					AutomountServiceAccountToken:  ptr.To(false),
					TerminationGracePeriodSeconds: ptr.To(int64(1)),
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot:   ptr.To(true),
						RunAsUser:      ptr.To(int64(runnerUID)),
						RunAsGroup:     ptr.To(int64(runnerUID)),
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Containers: []corev1.Container{{
						Name:            kube.ContainerName,
						Image:           cluster.PythonImage,
						ImagePullPolicy: corev1.PullIfNotPresent,
						Command:         []string{"python3", "-c", "import time; time.sleep(300)"},
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: ptr.To(false),
							ReadOnlyRootFilesystem:   ptr.To(true),
							Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						},
					}},
				},
			},
		},
	}
	created, err := cluster.Client.BatchV1().Jobs(namespace).Create(ctx, job, metav1.CreateOptions{})
	require.NoError(t, err, "creating job %s/%s", namespace, job.Name)
	return created
}

// deploySweeperJob returns the Job that the sweeper CronJob would create,
// changed to run in the test cluster: the image with the sweeper binary, the
// node's network, the API server's address from the admin kubeconfig,
// runsNamespace as the runs namespace and --min-age=1s.
func deploySweeperJob(t *testing.T, object *unstructured.Unstructured, runsNamespace string) *batchv1.Job {
	t.Helper()
	var cronJob batchv1.CronJob
	require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(object.Object, &cronJob))
	job := &batchv1.Job{
		ObjectMeta: *cronJob.Spec.JobTemplate.ObjectMeta.DeepCopy(),
		Spec:       *cronJob.Spec.JobTemplate.Spec.DeepCopy(),
	}
	job.Name = cronJob.Name + "-e2e"

	spec := &job.Spec.Template.Spec
	spec.HostNetwork = true
	require.Len(t, spec.Containers, 1, "containers of the CronJob's pod template")
	container := &spec.Containers[0]
	container.Image = cluster.ReceiverImage
	container.ImagePullPolicy = corev1.PullIfNotPresent
	container.Command = []string{"/usr/local/bin/sweeper"}
	container.Args = deployReplaceFlags(t, container.Args, map[string]string{
		"--namespace": runsNamespace,
		"--min-age":   "1s",
	})
	host, apiPort := deployAPIServerAddress(t)
	deploySetEnv(container, "KUBERNETES_SERVICE_HOST", host)
	deploySetEnv(container, "KUBERNETES_SERVICE_PORT", apiPort)
	return job
}

// deployReplaceFlags returns args with the value of each flag in values
// replaced. Each flag must be in args, in the form --name=value.
func deployReplaceFlags(t *testing.T, args []string, values map[string]string) []string {
	t.Helper()
	replaced := make([]string, len(args))
	seen := map[string]bool{}
	for i, arg := range args {
		replaced[i] = arg
		name, _, _ := strings.Cut(arg, "=")
		if value, ok := values[name]; ok {
			replaced[i] = name + "=" + value
			seen[name] = true
		}
	}
	for name := range values {
		require.True(t, seen[name], "the CronJob's args %q lack %s=", args, name)
	}
	return replaced
}

// deploySweeperLog reads the log of the sweeper Job's succeeded pod and
// returns the ConfigMaps named in its "Deleted stale ConfigMap" lines and
// the counts in its "Sweep finished" line.
func deploySweeperLog(ctx context.Context, t *testing.T, namespace, jobName string) ([]string, map[string]any) {
	t.Helper()
	var logs string
	for _, pod := range JobPods(ctx, t, namespace, jobName) {
		if pod.Status.Phase == corev1.PodSucceeded {
			var err error
			logs, err = PodLogs(ctx, namespace, pod.Name, "sweeper")
			require.NoError(t, err)
		}
	}
	require.NotEmpty(t, logs, "the sweeper job %s/%s has no succeeded pod with a log", namespace, jobName)

	var deleted []string
	var summary map[string]any
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		// knative.dev/pkg/logging writes JSON lines with the text under
		// "message". client-go may add klog's plain-text lines.
		var entry map[string]any
		if json.Unmarshal([]byte(line), &entry) != nil {
			continue
		}
		switch entry["message"] {
		case "Deleted stale ConfigMap":
			name, _ := entry["configMap"].(string)
			deleted = append(deleted, name)
		case "Sweep finished":
			summary = map[string]any{"deleted": entry["deleted"], "kept": entry["kept"]}
		}
	}
	require.NotNil(t, summary, "the sweeper logged no \"Sweep finished\" line:\n%s", logs)
	return deleted, summary
}
