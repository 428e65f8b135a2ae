package kube

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scriptrun/scriptrun/function/run"
)

// testRuntime is a runtime table entry shaped like the built-in python one.
var testRuntime = run.Runtime{
	Image:         "ghcr.io/scriptrun/runtime-python:0.1.0",
	Command:       []string{"python3", "-u"},
	FileExtension: "py",
}

// testSpec validates req as the receiver does and returns the Spec a Runner
// gets, so that ids and digests are the real ones.
func testSpec(t *testing.T, req run.Request) run.Spec {
	t.Helper()
	validator := run.Validator{
		Runtimes: map[string]run.Runtime{"python": testRuntime},
		Limits: run.Limits{
			MaxScriptBytes: 64 << 10,
			MaxStdinBytes:  64 << 10,
			DefaultTimeout: 30 * time.Second,
			MaxTimeout:     10 * time.Minute,
		},
	}
	spec, err := validator.Spec(req, "/tests/kube", "event-1")
	require.NoError(t, err)
	return spec
}

// builtInTemplate returns the parsed built-in Job template.
func builtInTemplate(t *testing.T) *Template {
	t.Helper()
	tmpl, err := LoadTemplate("")
	require.NoError(t, err)
	return tmpl
}
