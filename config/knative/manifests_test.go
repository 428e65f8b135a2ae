// Package knative_test checks that the deployment manifests decode strictly
// and agree with each other and with the receiver's defaults. The real API
// server checks them again in the end-to-end suite.
package knative_test

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"

	"github.com/scriptrun/scriptrun/function/runtimes"
	"github.com/scriptrun/scriptrun/templates"
)

// documents splits a YAML file into its documents.
func documents(t *testing.T, path string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := reader.Read()
		if err != nil {
			break
		}
		if len(bytes.TrimSpace(stripComments(doc))) > 0 {
			docs = append(docs, doc)
		}
	}
	return docs
}

func TestCoreManifestsDecodeStrictly(t *testing.T) {
	decoder := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	files, err := filepath.Glob("base/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, file := range files {
		switch filepath.Base(file) {
		case "kustomization.yaml", "runtimes.yaml", "broker.yaml", "trigger.yaml":
			continue // Not core Kubernetes objects.
		}
		for i, doc := range documents(t, file) {
			_, _, err := decoder.Decode(doc, nil, nil)
			assert.NoError(t, err, "%s document %d", file, i)
		}
	}
}

func TestRuntimeTablesMatch(t *testing.T) {
	data, err := os.ReadFile("base/runtimes.yaml")
	require.NoError(t, err)
	deployed, err := runtimes.Parse(data)
	require.NoError(t, err)
	builtIn, err := runtimes.Parse(templates.Runtimes)
	require.NoError(t, err)

	assert.Equal(t, builtIn, deployed, "base/runtimes.yaml and templates/runtimes.yaml list the same runtimes")
}

func TestPrepullCoversEveryRuntimeImage(t *testing.T) {
	var ds appsv1.DaemonSet
	decode(t, "base/image-prepull-daemonset.yaml", &ds)
	pulled := map[string]bool{}
	for _, c := range append(ds.Spec.Template.Spec.InitContainers, ds.Spec.Template.Spec.Containers...) {
		pulled[c.Image] = true
	}
	table, err := runtimes.Parse(templates.Runtimes)
	require.NoError(t, err)

	for name, rt := range table {
		assert.True(t, pulled[rt.Image], "runtime %s image %s is pre-pulled", name, rt.Image)
	}
}

func TestSettingsAgree(t *testing.T) {
	env := receiverEnv(t)
	maxTimeout, _ := strconv.Atoi(env["SCRIPTRUN_MAX_TIMEOUT_SECONDS"])
	margin, _ := strconv.Atoi(env["SCRIPTRUN_WAIT_MARGIN_SECONDS"])
	longestRun := time.Duration(maxTimeout+margin) * time.Second
	require.Positive(t, longestRun)

	var service struct {
		Spec struct {
			Template struct {
				Spec struct {
					TimeoutSeconds int `json:"timeoutSeconds"`
				} `json:"spec"`
			} `json:"template"`
		} `json:"spec"`
	}
	decodeYAML(t, "receiver-service.yaml", &service)
	assert.GreaterOrEqual(t, time.Duration(service.Spec.Template.Spec.TimeoutSeconds)*time.Second, longestRun,
		"the Knative Service's timeoutSeconds covers the longest run")

	var trigger struct {
		Spec struct {
			Filter struct {
				Attributes map[string]string `json:"attributes"`
			} `json:"filter"`
		} `json:"spec"`
	}
	decodeYAML(t, "base/trigger.yaml", &trigger)
	assert.Equal(t, env["SCRIPTRUN_REQUEST_TYPE"], trigger.Spec.Filter.Attributes["type"])

	var cron batchv1.CronJob
	decode(t, "base/sweeper-cronjob.yaml", &cron)
	args := strings.Join(cron.Spec.JobTemplate.Spec.Template.Spec.Containers[0].Args, " ")
	assert.Contains(t, args, "--namespace="+env["SCRIPTRUN_NAMESPACE"])
	minAge := flagDuration(t, args, "--min-age=")
	assert.Greater(t, minAge, longestRun, "the sweeper spares ConfigMaps of runs that may still be going")
}

func receiverEnv(t *testing.T) map[string]string {
	t.Helper()
	var service struct {
		Spec struct {
			Template struct {
				Spec corev1.PodSpec `json:"spec"`
			} `json:"template"`
		} `json:"spec"`
	}
	decodeYAML(t, "receiver-service.yaml", &service)
	require.NotEmpty(t, service.Spec.Template.Spec.Containers)
	env := map[string]string{}
	for _, e := range service.Spec.Template.Spec.Containers[0].Env {
		env[e.Name] = e.Value
	}
	return env
}

func flagDuration(t *testing.T, args, prefix string) time.Duration {
	t.Helper()
	for _, arg := range strings.Fields(args) {
		if value, ok := strings.CutPrefix(arg, prefix); ok {
			d, err := time.ParseDuration(value)
			require.NoError(t, err)
			return d
		}
	}
	t.Fatalf("no %s in %q", prefix, args)
	return 0
}

func decode(t *testing.T, path string, into runtime.Object) {
	t.Helper()
	docs := documents(t, path)
	require.Len(t, docs, 1, path)
	decoder := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	_, _, err := decoder.Decode(docs[0], nil, into)
	require.NoError(t, err, path)
}

func decodeYAML(t *testing.T, path string, into any) {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(data, into), path)
}

// stripComments drops comment lines, so a document of only comments counts
// as empty.
func stripComments(doc []byte) []byte {
	var out []string
	for _, line := range strings.Split(string(doc), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			out = append(out, line)
		}
	}
	return []byte(strings.Join(out, "\n"))
}
