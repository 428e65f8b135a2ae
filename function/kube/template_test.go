package kube

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/scriptrun/scriptrun/function/run"
	"github.com/scriptrun/scriptrun/templates"
)

// fixedCommandItems is how many items of the built-in template's command
// come before {{RUNTIME_COMMAND}}: /bin/sh, -c, the exec line and $0.
const fixedCommandItems = 4

func TestParseTemplateAcceptsBuiltIn(t *testing.T) {
	tmpl, err := ParseTemplate(templates.JobTemplate)
	require.NoError(t, err)
	assert.NotNil(t, tmpl)

	loaded, err := LoadTemplate("")
	require.NoError(t, err)
	assert.Equal(t, tmpl, loaded)
}

// editTemplate returns the built-in template with the first occurrence of old
// replaced by new.
func editTemplate(t *testing.T, old, new string) []byte {
	t.Helper()
	src := string(templates.JobTemplate)
	require.Contains(t, src, old, "the built-in template changed: update this test's edit")
	return []byte(strings.Replace(src, old, new, 1))
}

func TestParseTemplateRejects(t *testing.T) {
	tests := []struct {
		name     string
		template []byte
		wantErr  string
	}{
		{
			name:     "kind Pod",
			template: editTemplate(t, "kind: Job", "kind: Pod"),
			wantErr:  `kind "Pod" are invalid`,
		},
		{
			name:     "apiVersion batch/v1beta1",
			template: editTemplate(t, "apiVersion: batch/v1", "apiVersion: batch/v1beta1"),
			wantErr:  `apiVersion "batch/v1beta1"`,
		},
		{
			name:     "empty document",
			template: []byte(""),
			wantErr:  "the template must be a batch/v1 Job",
		},
		{
			name:     "unknown placeholder",
			template: editTemplate(t, `image: "{{IMAGE_NAME}}"`, `image: "{{IMAGE}}"`),
			wantErr:  "unknown placeholder {{IMAGE}}",
		},
		{
			name:     "lowercase placeholder",
			template: editTemplate(t, `image: "{{IMAGE_NAME}}"`, `image: "{{image_name}}"`),
			wantErr:  "unknown placeholder {{image_name}}",
		},
		{
			name:     "unknown placeholder inside a longer string",
			template: editTemplate(t, "workingDir: /tmp", `workingDir: "/tmp/{{WORKDIR}}"`),
			wantErr:  "unknown placeholder {{WORKDIR}}",
		},
		{
			name:     "runtime command sharing its list item",
			template: editTemplate(t, `- "{{RUNTIME_COMMAND}}"`, `- "{{RUNTIME_COMMAND}} -u"`),
			wantErr:  `{{RUNTIME_COMMAND}} must be a whole list item, found "{{RUNTIME_COMMAND}} -u"`,
		},
		{
			name:     "args sharing its list item",
			template: editTemplate(t, `- "{{ARGS}}"`, `- "--flag={{ARGS}}"`),
			wantErr:  "{{ARGS}} must be a whole list item",
		},
		{
			name:     "args as a scalar field",
			template: editTemplate(t, "workingDir: /tmp", `workingDir: "{{ARGS}}"`),
			wantErr:  "{{ARGS}} must be a whole list item",
		},
		{
			name:     "runtime command as a map value inside a list",
			template: editTemplate(t, "value: /tmp", `value: "{{RUNTIME_COMMAND}}"`),
			wantErr:  "{{RUNTIME_COMMAND}} must be a whole list item",
		},
		{
			name:     "placeholder in a label key",
			template: editTemplate(t, "  labels:\n    app: language-test", "  labels:\n    \"{{REQUEST_ID}}\": x\n    app: language-test"),
			wantErr:  `placeholders may not appear in keys, found "{{REQUEST_ID}}"`,
		},
		{
			name:     "list placeholder in a map key",
			template: editTemplate(t, "workingDir: /tmp", "workingDir: /tmp\n          \"{{ARGS}}\": x"),
			wantErr:  "placeholders may not appear in keys",
		},
		{
			name:     "fixed job name",
			template: editTemplate(t, `name: "{{JOB_NAME}}"`, "name: my-job"),
			wantErr:  `metadata.name is "my-job": set it to "{{JOB_NAME}}"`,
		},
		{
			name:     "script container renamed",
			template: editTemplate(t, "- name: script\n          image:", "- name: main\n          image:"),
			wantErr:  `no container named "script"`,
		},
		{
			name:     "configMap volume with a fixed name",
			template: editTemplate(t, `name: "{{CONFIGMAP_NAME}}"`, "name: user-script"),
			wantErr:  `no configMap volume named "{{CONFIGMAP_NAME}}"`,
		},
		{
			name: "script volume from a secret",
			template: editTemplate(t, "configMap:\n            name: \"{{CONFIGMAP_NAME}}\"",
				"secret:\n            secretName: \"{{CONFIGMAP_NAME}}\""),
			wantErr: "no configMap volume",
		},
		{
			name:     "unknown container field",
			template: editTemplate(t, "workingDir: /tmp", "workDir: /tmp"),
			wantErr:  `unknown field "workDir"`,
		},
		{
			name:     "unknown top-level field",
			template: append(slices.Clone(templates.JobTemplate), "\nextra: true\n"...),
			wantErr:  `unknown field "extra"`,
		},
		{
			name:     "field of the wrong type",
			template: editTemplate(t, "backoffLimit: 0", "backoffLimit: none"),
			wantErr:  "decoding rendered job",
		},
		{
			name:     "invalid YAML",
			template: []byte("apiVersion: batch/v1\nkind: [Job\n"),
			wantErr:  "invalid YAML",
		},
		{
			name:     "tab indentation",
			template: []byte("apiVersion: batch/v1\nkind: Job\nmetadata:\n\tname: x\n"),
			wantErr:  "invalid YAML",
		},
		{
			name:     "list at the top level",
			template: []byte("- apiVersion: batch/v1\n- kind: Job\n"),
			wantErr:  "decoding rendered job",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl, err := ParseTemplate(tt.template)

			require.Error(t, err)
			assert.Nil(t, tmpl)
			assert.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestLoadTemplateNamesTheFile(t *testing.T) {
	dir := t.TempDir()
	invalid := filepath.Join(dir, "invalid.yaml")
	require.NoError(t, os.WriteFile(invalid, editTemplate(t, "kind: Job", "kind: Pod"), 0o600))
	missing := filepath.Join(dir, "missing.yaml")

	tests := []struct {
		name    string
		path    string
		wantErr string
	}{
		{name: "invalid template", path: invalid, wantErr: "job template " + invalid + ": "},
		{name: "missing file", path: missing, wantErr: "reading job template: open " + missing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadTemplate(tt.path)

			assert.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestLoadTemplateFromFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "job.yaml")
	require.NoError(t, os.WriteFile(path, templates.JobTemplate, 0o600))

	got, err := LoadTemplate(path)

	require.NoError(t, err)
	assert.Equal(t, builtInTemplate(t), got)
}

// everywhere returns Values that put s into every placeholder, with a
// different prefix per field so that a value replaced by another field's
// shows. The list placeholders get s as a whole item too.
func everywhere(s string) Values {
	return Values{
		JobName:        "job" + s,
		ConfigMapName:  "cm" + s,
		RequestID:      "rid" + s,
		Image:          "image" + s,
		FileExtension:  "ext" + s,
		RuntimeCommand: []string{s, "cmd" + s},
		Args:           []string{s, "arg" + s, "{{JOB_NAME}}", "{{ARGS}}"},
	}
}

func TestRenderKeepsStructure(t *testing.T) {
	tmpl := builtInTemplate(t)
	plain := Values{
		JobName: "job", ConfigMapName: "cm", RequestID: "rid", Image: "image", FileExtension: "py",
		RuntimeCommand: []string{"python3"}, Args: []string{"a"},
	}
	want, err := tmpl.Render(plain)
	require.NoError(t, err)
	allPlaceholders := PlaceholderJobName + PlaceholderConfigMapName + PlaceholderRequestID +
		PlaceholderImageName + PlaceholderFileExtension + PlaceholderRuntimeCommand + PlaceholderArgs

	tests := []struct {
		name string
		vals Values
	}{
		{name: "newline and YAML keys", vals: everywhere("\nkind: Pod\nmetadata: {name: x}\n")},
		{name: "JSON object opener", vals: everywhere(`": {`)},
		{name: "list items", vals: everywhere("\n- x\n- y")},
		{name: "double and single quotes", vals: everywhere(`"'"''"`)},
		{name: "backslash escapes", vals: everywhere(`\" \\ \u0000 \n`)},
		{name: "job name placeholder", vals: everywhere(PlaceholderJobName)},
		{name: "args placeholder", vals: everywhere(PlaceholderArgs)},
		{name: "runtime command placeholder", vals: everywhere(PlaceholderRuntimeCommand)},
		{name: "every placeholder", vals: everywhere(allPlaceholders)},
		{name: "YAML alias", vals: everywhere("*a")},
		{name: "YAML anchor", vals: everywhere("&a x")},
		{name: "YAML merge key", vals: everywhere("<<: *a")},
		{name: "closing and opening braces", vals: everywhere("}}{{")},
		{name: "half a placeholder", vals: everywhere("{{JOB_")},
		{name: "document separator", vals: everywhere("\n---\nkind: Pod")},
		{name: "flow sequence", vals: everywhere("[a, {b: c}]")},
		{name: "comment", vals: everywhere(" # comment")},
		{name: "control characters", vals: everywhere("\x00\t\r\x1b[2J")},
		{name: "unicode", vals: everywhere("日本語 ✓ \u202e")},
		{name: "empty", vals: everywhere("")},
		{name: "very long", vals: everywhere(strings.Repeat("x", 1<<20))},
		{
			name: "values that are exactly other placeholders",
			vals: Values{
				JobName:        PlaceholderConfigMapName,
				ConfigMapName:  PlaceholderJobName,
				RequestID:      PlaceholderArgs,
				Image:          PlaceholderRuntimeCommand,
				FileExtension:  PlaceholderRequestID,
				RuntimeCommand: []string{PlaceholderArgs},
				Args:           []string{PlaceholderRuntimeCommand, PlaceholderImageName},
			},
		},
		{
			name: "no runtime command and no args",
			vals: Values{JobName: "job", ConfigMapName: "cm", RequestID: "rid", Image: "image", FileExtension: "py"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tmpl.Render(tt.vals)
			require.NoError(t, err)

			assertPlaceholderSites(t, want, got, tt.vals)

			// With the placeholder sites reset, nothing else may differ.
			resetPlaceholderSites(t, got, want)
			assert.Equal(t, want, got)
		})
	}
}

// assertPlaceholderSites checks that every placeholder site of the built-in
// template holds vals verbatim, and that the list sites grew by exactly the
// list values.
func assertPlaceholderSites(t *testing.T, want, got *batchv1.Job, vals Values) {
	t.Helper()
	assert.Equal(t, vals.JobName, got.Name)
	assert.Equal(t, vals.RequestID, got.Labels[RunIDLabel])
	assert.Equal(t, vals.RequestID, got.Spec.Template.Labels[RunIDLabel])

	require.Len(t, got.Spec.Template.Spec.Containers, len(want.Spec.Template.Spec.Containers))
	for i, c := range got.Spec.Template.Spec.Containers {
		assert.Equal(t, want.Spec.Template.Spec.Containers[i].Name, c.Name)
	}
	container := scriptContainer(&got.Spec.Template.Spec)
	require.NotNil(t, container)
	assert.Equal(t, vals.Image, container.Image)

	command := container.Command
	runtimeEnd := fixedCommandItems + len(vals.RuntimeCommand)
	require.Len(t, command, runtimeEnd+1+len(vals.Args))
	wantContainer := scriptContainer(&want.Spec.Template.Spec)
	assert.Equal(t, wantContainer.Command[:fixedCommandItems], command[:fixedCommandItems])
	assert.Equal(t, nilIfEmpty(vals.RuntimeCommand), nilIfEmpty(command[fixedCommandItems:runtimeEnd]))
	assert.Equal(t, "/script/run_tests."+vals.FileExtension, command[runtimeEnd])
	assert.Equal(t, nilIfEmpty(vals.Args), nilIfEmpty(command[runtimeEnd+1:]))

	require.Len(t, got.Spec.Template.Spec.Volumes, len(want.Spec.Template.Spec.Volumes))
	volume := configMapVolume(t, got)
	assert.Equal(t, vals.ConfigMapName, volume.ConfigMap.Name)
	require.NotEmpty(t, volume.ConfigMap.Items)
	assert.Equal(t, "run_tests."+vals.FileExtension, volume.ConfigMap.Items[0].Path)
}

// resetPlaceholderSites copies every placeholder site from want into got.
func resetPlaceholderSites(t *testing.T, got, want *batchv1.Job) {
	t.Helper()
	got.Name = want.Name
	got.Labels[RunIDLabel] = want.Labels[RunIDLabel]
	got.Spec.Template.Labels[RunIDLabel] = want.Spec.Template.Labels[RunIDLabel]
	container := scriptContainer(&got.Spec.Template.Spec)
	wantContainer := scriptContainer(&want.Spec.Template.Spec)
	container.Image = wantContainer.Image
	container.Command = wantContainer.Command
	volume, wantVolume := configMapVolume(t, got), configMapVolume(t, want)
	volume.ConfigMap.Name = wantVolume.ConfigMap.Name
	volume.ConfigMap.Items[0].Path = wantVolume.ConfigMap.Items[0].Path
}

func configMapVolume(t *testing.T, job *batchv1.Job) *corev1.Volume {
	t.Helper()
	volumes := job.Spec.Template.Spec.Volumes
	for i := range volumes {
		if volumes[i].ConfigMap != nil {
			return &volumes[i]
		}
	}
	require.FailNow(t, "the job has no configMap volume")
	return nil
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

func TestRenderLeavesTemplateUnchanged(t *testing.T) {
	tmpl := builtInTemplate(t)
	first, err := tmpl.Render(everywhere("first"))
	require.NoError(t, err)

	_, err = tmpl.Render(everywhere("second"))
	require.NoError(t, err)
	again, err := tmpl.Render(everywhere("first"))
	require.NoError(t, err)

	assert.Equal(t, first, again)
	assert.Equal(t, builtInTemplate(t), tmpl)
}

func TestRenderConcurrently(t *testing.T) {
	tmpl := builtInTemplate(t)
	const renders = 16
	type rendered struct {
		want string
		job  *batchv1.Job
		err  error
	}
	results := make(chan rendered, renders)
	for i := range renders {
		go func() {
			vals := everywhere(fmt.Sprint(i))
			job, err := tmpl.Render(vals)
			results <- rendered{want: vals.JobName, job: job, err: err}
		}()
	}

	for range renders {
		r := <-results
		require.NoError(t, r.err)
		assert.Equal(t, r.want, r.job.Name)
	}
}

// goldenSpec is a fixed run for the golden file. Its values are literals, so
// that the file changes only when the template or newJob does.
var goldenSpec = run.Spec{
	ID:        "golden-request-0123456789abcdef",
	RequestID: "golden-request",
	Digest:    "5d41402abc4b2a76b9719d911017c592",
	Language:  "python",
	Runtime:   testRuntime,
	Script:    "print('hello')\n",
	Args:      []string{"--verbose", `it's "quoted"`},
	Timeout:   30 * time.Second,
}

// TestBuiltInJobGolden compares the Job built from the built-in template, as
// newJob sends it to the API server, with testdata/job.golden.yaml. Set
// UPDATE_GOLDEN=1 to rewrite the file after an intended change.
func TestBuiltInJobGolden(t *testing.T) {
	runner := NewRunner(nil, nil, Options{
		Namespace:         "scriptrun-runs",
		Template:          builtInTemplate(t),
		JobTTL:            5 * time.Minute,
		JobDeadlineMargin: 30 * time.Second,
		MaxOutputBytes:    1 << 20,
	})
	job, err := runner.newJob(goldenSpec)
	require.NoError(t, err)
	got, err := yaml.Marshal(job)
	require.NoError(t, err)

	path := filepath.Join("testdata", "job.golden.yaml")
	if os.Getenv("UPDATE_GOLDEN") == "1" {
		require.NoError(t, os.WriteFile(path, got, 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "create the file with UPDATE_GOLDEN=1 go test ./function/kube/")

	assert.Equal(t, string(want), string(got), "rerun with UPDATE_GOLDEN=1 if the change is intended")
}
