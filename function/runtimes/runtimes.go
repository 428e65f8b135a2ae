// Package runtimes loads the runtime table: the languages a request may
// name, each with its image, command and file extension.
package runtimes

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"unicode"

	"sigs.k8s.io/yaml"

	"github.com/scriptrun/scriptrun/function/run"
	"github.com/scriptrun/scriptrun/templates"
)

// Table maps a language name to its runtime.
type Table map[string]run.Runtime

type file struct {
	Runtimes Table `json:"runtimes"`
}

var (
	languageName  = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)
	fileExtension = regexp.MustCompile(`^[A-Za-z0-9]{1,16}$`)
)

// Load reads the table from path, or the built-in table when path is empty.
// It returns an error naming the file and the first invalid entry.
func Load(path string) (Table, error) {
	data, name := templates.Runtimes, "built-in runtimes.yaml"
	if path != "" {
		var err error
		if data, err = os.ReadFile(path); err != nil {
			return nil, fmt.Errorf("reading runtime table: %w", err)
		}
		name = path
	}
	table, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("runtime table %s: %w", name, err)
	}
	return table, nil
}

// Parse decodes and checks a runtime table. Unknown fields are errors, so a
// misspelt key does not silently fall back to a default.
func Parse(data []byte) (Table, error) {
	var f file
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return nil, fmt.Errorf("invalid YAML: %w", err)
	}
	if len(f.Runtimes) == 0 {
		return nil, fmt.Errorf("no runtimes: add at least one entry under runtimes")
	}
	names := make([]string, 0, len(f.Runtimes))
	for name := range f.Runtimes {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		rt := f.Runtimes[name]
		if err := check(name, &rt); err != nil {
			return nil, err
		}
		f.Runtimes[name] = rt
	}
	return f.Runtimes, nil
}

func check(name string, rt *run.Runtime) error {
	switch {
	case !languageName.MatchString(name):
		return fmt.Errorf("language %q is invalid: use lowercase letters, digits, - and _, starting with a letter", name)
	case strings.TrimSpace(rt.Image) == "":
		return fmt.Errorf("runtimes.%s.image is missing: set the runtime's container image", name)
	case strings.IndexFunc(rt.Image, unicode.IsSpace) >= 0:
		// The API server accepts such an image in a Job's pod template and
		// then rejects every pod the Job controller creates.
		return fmt.Errorf("runtimes.%s.image %q contains whitespace: remove it", name, rt.Image)
	case len(rt.Command) == 0 || rt.Command[0] == "":
		return fmt.Errorf("runtimes.%s.command is missing: set the runtime's command, such as [python3, -u]", name)
	case !fileExtension.MatchString(rt.FileExtension):
		return fmt.Errorf("runtimes.%s.fileExtension %q is invalid: set 1 to 16 letters or digits, without the dot", name, rt.FileExtension)
	}
	if len(rt.LocalCommand) == 0 {
		rt.LocalCommand = rt.Command
	}
	return nil
}
