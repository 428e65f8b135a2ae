package runtimes

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLoadBuiltInTable(t *testing.T) {
	table, err := Load("")
	require.NoError(t, err)

	require.Contains(t, table, "python")
	require.Contains(t, table, "node")
	assert.Equal(t, []string{"python3", "-u"}, table["python"].Command)
	assert.Equal(t, "py", table["python"].FileExtension)
	assert.Equal(t, table["node"].Command, table["node"].LocalCommand)
}

func TestParseDefaultsLocalCommand(t *testing.T) {
	table, err := Parse([]byte("runtimes:\n  ruby:\n    image: ruby:3\n    command: [ruby]\n    fileExtension: rb\n"))
	require.NoError(t, err)

	assert.Equal(t, []string{"ruby"}, table["ruby"].LocalCommand, "localCommand falls back to command")
}

func TestParseRejects(t *testing.T) {
	tests := []struct {
		name     string
		yaml     string
		wantText string
	}{
		{"empty table", "runtimes: {}\n", "no runtimes"},
		{"unknown key", "runtimes:\n  py:\n    image: x\n    command: [python3]\n    fileExtension: py\n    extension: py\n", "unknown field"},
		{"upper-case language", "runtimes:\n  Python:\n    image: x\n    command: [python3]\n    fileExtension: py\n", `language "Python" is invalid`},
		{"missing image", "runtimes:\n  py:\n    command: [python3]\n    fileExtension: py\n", "runtimes.py.image is missing"},
		{"image with whitespace", "runtimes:\n  py:\n    image: 'x:1 '\n    command: [python3]\n    fileExtension: py\n", "contains whitespace"},
		{"missing command", "runtimes:\n  py:\n    image: x\n    fileExtension: py\n", "runtimes.py.command is missing"},
		{"extension with dot", "runtimes:\n  py:\n    image: x\n    command: [python3]\n    fileExtension: .py\n", `fileExtension ".py" is invalid`},
		{"not YAML", "runtimes: [", "invalid YAML"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))

			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantText)
		})
	}
}

func TestLoadNamesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "runtimes.yaml")
	require.NoError(t, os.WriteFile(path, []byte("runtimes: {}\n"), 0o600))

	_, err := Load(path)

	require.Error(t, err)
	assert.Contains(t, err.Error(), path)
}
