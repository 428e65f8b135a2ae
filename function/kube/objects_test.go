package kube

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/scriptrun/scriptrun/function/run"
)

func TestRunObjectNames(t *testing.T) {
	tests := []struct {
		name      string
		requestID string
		source    string
		eventID   string
	}{
		{name: "empty request and event ids"},
		{name: "event id only", source: "/orders", eventID: "3f2a-event"},
		{name: "unicode request id", requestID: "日本語のリクエスト"},
		{name: "unicode around ascii", requestID: "ü-order-ß-42-ñ"},
		{name: "256-character request id", requestID: strings.Repeat("a", 256)},
		{name: "256 two-byte characters", requestID: strings.Repeat("é", 256)},
		{name: "all symbols", requestID: "!@#$%^&*()_+-=[]{}|;':\",./<>?`~"},
		{name: "path-like request id", requestID: "../../etc/passwd"},
		{name: "upper case request id", requestID: "ORDER-42-ABC"},
		{name: "dns name request id", requestID: "run.scriptrun.example.com"},
		{name: "whitespace request id", requestID: " \t order 42 \t "},
		{name: "dash at the prefix limit", requestID: strings.Repeat("a", 19) + "-bbbbbbbb"},
		{name: "long unicode event id", source: "/s", eventID: strings.Repeat("ü", 300)},
	}
	owners := map[string]string{}
	for _, tt := range tests {
		id := run.ID(tt.requestID, tt.source, tt.eventID)
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, id, run.ID(tt.requestID, tt.source, tt.eventID), "run id is not stable")
			for _, name := range []struct {
				kind string
				of   func(string) string
			}{{"job", JobName}, {"configmap", ConfigMapName}} {
				got := name.of(id)
				assert.Equal(t, got, name.of(id), "%s name is not stable", name.kind)
				assert.LessOrEqual(t, len(got), validation.DNS1123LabelMaxLength, "%s name %q", name.kind, got)
				assert.Empty(t, validation.IsDNS1123Label(got), "%s name %q", name.kind, got)
			}
			assert.Empty(t, validation.IsValidLabelValue(id), "run id %q as a label value", id)
		})

		for _, name := range []string{JobName(id), ConfigMapName(id)} {
			if other, ok := owners[name]; ok {
				t.Errorf("cases %q and %q share the name %q", other, tt.name, name)
			}
			owners[name] = tt.name
		}
	}
}

// TestRunObjectNamesPinned fixes the names of one run id. A change would make
// a redelivery that spans an upgrade start a second Job.
func TestRunObjectNamesPinned(t *testing.T) {
	id := run.ID("order-42", "", "")

	assert.Equal(t, "order-42-d976a862b200e6ed", id)
	assert.Equal(t, "language-test-job-order-42-d976a862b200e6ed", JobName(id))
	assert.Equal(t, "user-script-order-42-d976a862b200e6ed", ConfigMapName(id))
}

// testRunner returns a Runner without a client, enough for newJob.
func testRunner(t *testing.T, tmpl *Template) *Runner {
	t.Helper()
	return NewRunner(nil, nil, Options{
		Namespace:         "runs",
		Template:          tmpl,
		JobTTL:            300 * time.Second,
		JobDeadlineMargin: 15 * time.Second,
		MaxOutputBytes:    1 << 20,
	})
}

func loadTestTemplate(t *testing.T, name string) *Template {
	t.Helper()
	tmpl, err := LoadTemplate(filepath.Join("testdata", name))
	require.NoError(t, err)
	return tmpl
}

func TestNewJobEnforcesRunFields(t *testing.T) {
	spec := testSpec(t, run.Request{Language: "python", Script: "print(1)", RequestID: "Order 42", TimeoutSeconds: run.IntPtr(30)})
	tests := []struct {
		name            string
		template        *Template
		wantLabels      map[string]string
		wantAnnotations map[string]string
	}{
		{
			name:     "built-in template",
			template: builtInTemplate(t),
		},
		{
			name:            "template that sets every enforced field",
			template:        loadTestTemplate(t, "override_template.yaml"),
			wantLabels:      map[string]string{"team": "platform"},
			wantAnnotations: map[string]string{"owner": "platform-team"},
		},
		{
			name:     "template without labels or settings",
			template: loadTestTemplate(t, "minimal_template.yaml"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			job, err := testRunner(t, tt.template).newJob(spec)
			require.NoError(t, err)

			wantLabels := map[string]string{AppLabel: AppValue, RunIDLabel: spec.ID}
			for k, v := range tt.wantLabels {
				wantLabels[k] = v
			}
			wantAnnotations := map[string]string{DigestAnnotation: spec.Digest, RequestIDAnnotation: "Order 42"}
			for k, v := range tt.wantAnnotations {
				wantAnnotations[k] = v
			}
			assert.Equal(t, "runs", job.Namespace)
			assert.Equal(t, JobName(spec.ID), job.Name)
			assert.Equal(t, wantLabels, job.Labels)
			assert.Equal(t, wantLabels, job.Spec.Template.Labels)
			assert.Equal(t, wantAnnotations, job.Annotations)

			require.NotNil(t, job.Spec.BackoffLimit)
			assert.Equal(t, int32(0), *job.Spec.BackoffLimit)
			require.NotNil(t, job.Spec.TTLSecondsAfterFinished)
			assert.Equal(t, int32(300), *job.Spec.TTLSecondsAfterFinished)
			require.NotNil(t, job.Spec.ActiveDeadlineSeconds)
			assert.Equal(t, int64(30+15), *job.Spec.ActiveDeadlineSeconds, "job deadline is the timeout plus the margin")
			require.NotNil(t, job.Spec.Template.Spec.ActiveDeadlineSeconds)
			assert.Equal(t, int64(30), *job.Spec.Template.Spec.ActiveDeadlineSeconds, "pod deadline is the timeout")
			assert.Equal(t, corev1.RestartPolicyNever, job.Spec.Template.Spec.RestartPolicy)

			container := scriptContainer(&job.Spec.Template.Spec)
			require.NotNil(t, container)
			assert.Equal(t, testRuntime.Image, container.Image)
			assert.True(t, mountsConfigMap(&job.Spec.Template.Spec, ConfigMapName(spec.ID)))
		})
	}
}

func TestNewJobDoesNotChangeTemplateMaps(t *testing.T) {
	runner := testRunner(t, loadTestTemplate(t, "override_template.yaml"))
	first := testSpec(t, run.Request{Language: "python", Script: "print(1)", RequestID: "first"})
	second := testSpec(t, run.Request{Language: "python", Script: "print(2)", RequestID: "second"})

	firstJob, err := runner.newJob(first)
	require.NoError(t, err)
	_, err = runner.newJob(second)
	require.NoError(t, err)

	assert.Equal(t, first.ID, firstJob.Labels[RunIDLabel])
	assert.Equal(t, first.Digest, firstJob.Annotations[DigestAnnotation])
}

func TestNewJobRejects(t *testing.T) {
	valid := testSpec(t, run.Request{Language: "python", Script: "print(1)", RequestID: "order-42"})
	tests := []struct {
		name     string
		template string
		edit     func(*run.Spec)
		wantErr  string
	}{
		{
			name:    "run id that is not a DNS label",
			edit:    func(s *run.Spec) { s.ID = "Order 42" },
			wantErr: `job name "language-test-job-Order 42" is invalid`,
		},
		{
			name:    "run id too long for a label value",
			edit:    func(s *run.Spec) { s.ID = strings.Repeat("a", 64) },
			wantErr: "is invalid: [must be no more than 63 characters]",
		},
		{
			name:    "runtime without an image",
			edit:    func(s *run.Spec) { s.Runtime.Image = "" },
			wantErr: `container "script" of job ` + JobName(valid.ID) + " has no image or no command",
		},
		{
			name: "template label with an invalid value",
			template: strings.Replace(string(mustRead(t, "minimal_template.yaml")), "  name: \"{{JOB_NAME}}\"",
				"  name: \"{{JOB_NAME}}\"\n  labels:\n    team: \"not valid!\"", 1),
			wantErr: `label team="not valid!" is invalid`,
		},
		{
			name: "template label with an invalid key",
			template: strings.Replace(string(mustRead(t, "minimal_template.yaml")), "  name: \"{{JOB_NAME}}\"",
				"  name: \"{{JOB_NAME}}\"\n  labels:\n    \"bad key!\": x", 1),
			wantErr: `label key "bad key!" is invalid`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl := builtInTemplate(t)
			if tt.template != "" {
				var err error
				tmpl, err = ParseTemplate([]byte(tt.template))
				require.NoError(t, err)
			}
			spec := valid
			if tt.edit != nil {
				tt.edit(&spec)
			}

			job, err := testRunner(t, tmpl).newJob(spec)

			assert.Nil(t, job)
			assert.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	tmpl, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return tmpl
}

func TestNewConfigMap(t *testing.T) {
	spec := testSpec(t, run.Request{Language: "python", Script: "print(input())", Stdin: "hello\n", RequestID: "order-42"})

	cm := newConfigMap("runs", spec)

	assert.Equal(t, "runs", cm.Namespace)
	assert.Equal(t, ConfigMapName(spec.ID), cm.Name)
	assert.Equal(t, map[string]string{AppLabel: AppValue, RunIDLabel: spec.ID}, cm.Labels)
	assert.Equal(t, map[string]string{DigestAnnotation: spec.Digest, RequestIDAnnotation: "order-42"}, cm.Annotations)
	assert.Equal(t, map[string]string{ScriptKey: "print(input())", StdinKey: "hello\n"}, cm.Data)
}
