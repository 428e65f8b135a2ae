package kube

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	"sigs.k8s.io/yaml"

	"github.com/scriptrun/scriptrun/templates"
)

// Placeholders replaced inside the template's string values.
const (
	PlaceholderJobName       = "{{JOB_NAME}}"
	PlaceholderConfigMapName = "{{CONFIGMAP_NAME}}"
	PlaceholderRequestID     = "{{REQUEST_ID}}"
	PlaceholderImageName     = "{{IMAGE_NAME}}"
	PlaceholderFileExtension = "{{FILE_EXTENSION}}"
	// PlaceholderRuntimeCommand and PlaceholderArgs expand to several words,
	// so each must be a whole item of a list.
	PlaceholderRuntimeCommand = "{{RUNTIME_COMMAND}}"
	PlaceholderArgs           = "{{ARGS}}"
)

var (
	placeholderPattern = regexp.MustCompile(`\{\{[A-Za-z0-9_]+\}\}`)
	scalarPlaceholders = []string{PlaceholderJobName, PlaceholderConfigMapName, PlaceholderRequestID,
		PlaceholderImageName, PlaceholderFileExtension}
	listPlaceholders = []string{PlaceholderRuntimeCommand, PlaceholderArgs}
)

// Values are the substitutions for a rendered Job's placeholders.
type Values struct {
	JobName        string
	ConfigMapName  string
	RequestID      string
	Image          string
	FileExtension  string
	RuntimeCommand []string
	Args           []string
}

// Template is a parsed Job template. It is safe for concurrent use.
type Template struct {
	// tree is the template decoded from YAML into maps, slices and scalars.
	// Render substitutes into a copy, never into YAML text.
	tree any
}

// LoadTemplate reads the template at path, or the built-in template when path
// is empty, and parses it.
func LoadTemplate(path string) (*Template, error) {
	data, name := templates.JobTemplate, "built-in job_template.yaml"
	if path != "" {
		var err error
		if data, err = os.ReadFile(path); err != nil {
			return nil, fmt.Errorf("reading job template: %w", err)
		}
		name = path
	}
	t, err := ParseTemplate(data)
	if err != nil {
		return nil, fmt.Errorf("job template %s: %w", name, err)
	}
	return t, nil
}

// ParseTemplate decodes a Job template and checks it: it must be a batch/v1
// Job, use only known placeholders, use the list placeholders only as whole
// list items, and decode into a Job with no unknown fields once rendered.
func ParseTemplate(data []byte) (*Template, error) {
	// Strict: a key given twice is an error, not a silent override.
	body, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, fmt.Errorf("invalid YAML: %w", err)
	}
	var tree any
	if err := json.Unmarshal(body, &tree); err != nil {
		return nil, fmt.Errorf("invalid YAML: %w", err)
	}
	if err := checkPlaceholders(tree, "", false); err != nil {
		return nil, err
	}

	t := &Template{tree: tree}
	job, err := t.Render(Values{
		JobName: "check", ConfigMapName: "check", RequestID: "check", Image: "check",
		FileExtension: "py", RuntimeCommand: []string{"check"},
	})
	if err != nil {
		return nil, err
	}
	if job.APIVersion != "batch/v1" || job.Kind != "Job" {
		return nil, fmt.Errorf("apiVersion %q and kind %q are invalid: the template must be a batch/v1 Job", job.APIVersion, job.Kind)
	}
	if job.Name != "check" {
		return nil, fmt.Errorf("metadata.name is %q: set it to %q", job.Name, PlaceholderJobName)
	}
	if scriptContainer(&job.Spec.Template.Spec) == nil {
		return nil, fmt.Errorf("no container named %q: the run's logs and exit code are read from it", ContainerName)
	}
	if !mountsConfigMap(&job.Spec.Template.Spec, "check") {
		return nil, fmt.Errorf("no configMap volume named %q: the script would not be mounted", PlaceholderConfigMapName)
	}
	return t, nil
}

// checkPlaceholders walks the tree and rejects unknown placeholders, list
// placeholders outside list items, and placeholders in map keys.
func checkPlaceholders(node any, path string, inList bool) error {
	switch v := node.(type) {
	case map[string]any:
		for key, child := range v {
			if placeholderPattern.MatchString(key) {
				return fmt.Errorf("%s: placeholders may not appear in keys, found %q", path, key)
			}
			if err := checkPlaceholders(child, path+"."+key, false); err != nil {
				return err
			}
		}
	case []any:
		for i, child := range v {
			if err := checkPlaceholders(child, fmt.Sprintf("%s[%d]", path, i), true); err != nil {
				return err
			}
		}
	case string:
		for _, p := range placeholderPattern.FindAllString(v, -1) {
			switch {
			case slices.Contains(listPlaceholders, p):
				if !inList || v != p {
					return fmt.Errorf("%s: %s must be a whole list item, found %q", path, p, v)
				}
			case !slices.Contains(scalarPlaceholders, p):
				return fmt.Errorf("%s: unknown placeholder %s: use one of %s, %s", path, p,
					strings.Join(scalarPlaceholders, ", "), strings.Join(listPlaceholders, ", "))
			}
		}
	}
	return nil
}

// Render returns the Job for vals. Values are substituted in one pass inside
// decoded strings, so no value can add structure or bring a placeholder back,
// whatever characters it holds.
func (t *Template) Render(vals Values) (*batchv1.Job, error) {
	replacer := strings.NewReplacer(
		PlaceholderJobName, vals.JobName,
		PlaceholderConfigMapName, vals.ConfigMapName,
		PlaceholderRequestID, vals.RequestID,
		PlaceholderImageName, vals.Image,
		PlaceholderFileExtension, vals.FileExtension,
	)
	lists := map[string][]string{PlaceholderRuntimeCommand: vals.RuntimeCommand, PlaceholderArgs: vals.Args}
	rendered := substitute(t.tree, replacer, lists)

	body, err := json.Marshal(rendered)
	if err != nil {
		return nil, fmt.Errorf("encoding rendered job: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var job batchv1.Job
	if err := dec.Decode(&job); err != nil {
		return nil, fmt.Errorf("decoding rendered job: %w", err)
	}
	return &job, nil
}

func substitute(node any, replacer *strings.Replacer, lists map[string][]string) any {
	switch v := node.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for key, child := range v {
			out[key] = substitute(child, replacer, lists)
		}
		return out
	case []any:
		out := make([]any, 0, len(v))
		for _, child := range v {
			if s, ok := child.(string); ok {
				if words, isList := lists[s]; isList {
					for _, w := range words {
						out = append(out, w)
					}
					continue
				}
			}
			out = append(out, substitute(child, replacer, lists))
		}
		return out
	case string:
		return replacer.Replace(v)
	default:
		return v
	}
}
