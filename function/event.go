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
	if trimmed := bytes.TrimSpace(data); len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
		return run.Request{}, &run.RejectedError{Field: "data",
			Reason: "missing: send a JSON object with at least language and script"}
	}

	if err := checkKeys(data); err != nil {
		return run.Request{}, err
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

// requestFields are the JSON names of run.Request's fields.
var requestFields = map[string]bool{
	"language": true, "script": true, "requestId": true, "stdin": true, "args": true, "timeoutSeconds": true,
}

// checkKeys rejects what encoding/json would quietly accept in a request
// object: a key in another case ("Script"), which it matches to a field, and
// a key given twice, of which it keeps the last. Either would let a gateway
// that reads the JSON differently see another script than the one that runs.
func checkKeys(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil // Not an object: decoding reports it.
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		key, _ := tok.(string)
		if !requestFields[key] {
			return &run.RejectedError{Field: "data", Reason: fmt.Sprintf(
				"unknown field %q: the fields are language, script, requestId, stdin, args and timeoutSeconds, spelled exactly so", truncateKey(key))}
		}
		if seen[key] {
			return &run.RejectedError{Field: key, Reason: "given twice: send each field once"}
		}
		seen[key] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil
		}
	}
	return nil
}

func truncateKey(key string) string {
	if len(key) > 64 {
		return key[:64] + "..."
	}
	return key
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
		if typeErr.Field == "" {
			return fmt.Sprintf("must be a JSON object, not a JSON %s", typeErr.Value)
		}
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
