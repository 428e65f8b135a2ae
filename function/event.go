package function

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"strings"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/scriptrun/scriptrun/function/run"
)

// decodeRequest reads a run.requested event's data. Data that is missing, not
// JSON, or has unknown fields is a *run.RejectedError saying what to send.
func decodeRequest(e event.Event) (run.Request, error) {
	if ct := e.DataContentType(); ct != "" && !isJSON(ct) {
		return run.Request{}, &run.RejectedError{Field: "datacontenttype",
			Reason: fmt.Sprintf("%q is not supported: send the data as application/json", ct)}
	}
	data := e.Data()
	if len(bytes.TrimSpace(data)) == 0 {
		return run.Request{}, &run.RejectedError{Field: "data",
			Reason: "missing: send a JSON object with at least language and script"}
	}

	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var req run.Request
	if err := dec.Decode(&req); err != nil {
		return run.Request{}, &run.RejectedError{Field: "data", Reason: describeJSONError(err)}
	}
	if dec.More() {
		return run.Request{}, &run.RejectedError{Field: "data",
			Reason: "has content after the JSON object: send exactly one object"}
	}
	return req, nil
}

func isJSON(contentType string) bool {
	mediaType, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return mediaType == "application/json" || strings.HasSuffix(mediaType, "+json")
}

func describeJSONError(err error) string {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		return fmt.Sprintf("field %s must be %s, not a JSON %s", typeErr.Field, jsonKind(typeErr.Type.Kind().String()), typeErr.Value)
	}
	msg := err.Error()
	if strings.HasPrefix(msg, "json: unknown field ") {
		return fmt.Sprintf("%s: the fields are language, script, requestId, stdin, args and timeoutSeconds",
			strings.TrimPrefix(msg, "json: "))
	}
	return "invalid JSON: " + strings.TrimPrefix(msg, "json: ")
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "int", "int64":
		return "an integer"
	case "slice":
		return "a list of strings"
	case "struct":
		return "an object"
	default:
		return "a " + goKind
	}
}
