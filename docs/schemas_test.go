package docs_test

import (
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/scriptrun/scriptrun/function/run"
)

// schema is the part of a JSON Schema that the Go types must agree with.
type schema struct {
	Required   []string `json:"required"`
	Properties map[string]struct {
		Type string   `json:"type"`
		Enum []string `json:"enum"`
	} `json:"properties"`
}

func loadSchema(t *testing.T, path string) schema {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var s schema
	require.NoError(t, json.Unmarshal(data, &s))
	return s
}

// jsonFields returns the JSON name, schema type and requiredness of each of
// the struct's fields. A field is required unless its tag has omitempty.
func jsonFields(t *testing.T, v any) map[string]struct {
	typ      string
	required bool
} {
	t.Helper()
	fields := map[string]struct {
		typ      string
		required bool
	}{}
	rt := reflect.TypeOf(v)
	for i := range rt.NumField() {
		f := rt.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		fields[name] = struct {
			typ      string
			required bool
		}{schemaType(t, f.Type), !strings.Contains(opts, "omitempty")}
	}
	return fields
}

func schemaType(t *testing.T, typ reflect.Type) string {
	t.Helper()
	if typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	if typ == reflect.TypeOf(time.Time{}) {
		return "string"
	}
	switch typ.Kind() {
	case reflect.String:
		return "string"
	case reflect.Int, reflect.Int64:
		return "integer"
	case reflect.Bool:
		return "boolean"
	case reflect.Slice:
		return "array"
	}
	t.Fatalf("no schema type for Go type %s", typ)
	return ""
}

func TestSchemasMatchGoTypes(t *testing.T) {
	tests := []struct {
		name   string
		path   string
		goType any
	}{
		{"run.requested", "schemas/run.requested.json", run.Request{}},
		{"run.completed", "schemas/run.completed.json", run.Result{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := loadSchema(t, tt.path)
			fields := jsonFields(t, tt.goType)

			var wantRequired []string
			for name, f := range fields {
				prop, ok := s.Properties[name]
				if assert.True(t, ok, "schema lacks field %s", name) {
					assert.Equal(t, f.typ, prop.Type, "type of %s", name)
				}
				if f.required {
					wantRequired = append(wantRequired, name)
				}
			}
			for name := range s.Properties {
				_, ok := fields[name]
				assert.True(t, ok, "schema has field %s, which the Go type lacks", name)
			}
			slices.Sort(wantRequired)
			gotRequired := slices.Clone(s.Required)
			slices.Sort(gotRequired)
			assert.Equal(t, wantRequired, gotRequired)
		})
	}
}

func TestSchemaStatusEnumMatchesGo(t *testing.T) {
	s := loadSchema(t, "schemas/run.completed.json")
	var want []string
	for _, status := range run.Statuses {
		want = append(want, string(status))
	}
	assert.Equal(t, want, s.Properties["status"].Enum)
}

func TestEventsDocListsEveryField(t *testing.T) {
	doc, err := os.ReadFile("events.md")
	require.NoError(t, err)
	for _, v := range []any{run.Request{}, run.Result{}} {
		for name := range jsonFields(t, v) {
			assert.Contains(t, string(doc), "`"+name+"`", "events.md documents %s", name)
		}
	}
	for _, status := range run.Statuses {
		assert.Contains(t, string(doc), "`"+string(status)+"`")
	}
}
