package function

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/scriptrun/scriptrun/function/run"
)

// FuzzDecodeRequest checks that any data and content type either decode into
// a request that survives a JSON round trip, or fail with a RejectedError
// naming a field. Nothing panics and nothing else comes back.
func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(`{"language":"python","script":"print(1)"}`), "application/json")
	f.Add([]byte(`{"language":"node","script":"x","args":["a","b"],"stdin":"s","timeoutSeconds":3,"requestId":"r"}`), "application/json; charset=utf-8")
	f.Add([]byte(`{"language":"python","script":"x"} {}`), "application/json")
	f.Add([]byte(`{"timeoutSeconds":1e400}`), "application/json")
	f.Add([]byte(`{"args":[null]}`), "text/json+json")
	f.Add([]byte("\xff\xfe"), "text/plain")
	f.Add([]byte(`{"script":"\ud800"}`), "")

	f.Fuzz(func(t *testing.T, data []byte, contentType string) {
		e := event.New()
		e.SetID("1")
		e.SetSource("/fuzz")
		e.SetType("run.requested")
		e.DataEncoded = data
		e.SetDataContentType(contentType)

		req, err := decodeRequest(e)
		if err != nil {
			var rejected *run.RejectedError
			if !errors.As(err, &rejected) || rejected.Field == "" || rejected.Reason == "" {
				t.Fatalf("decodeRequest(%q, %q) = %v, want a RejectedError with a field and a reason", data, contentType, err)
			}
			return
		}
		body, err := json.Marshal(req)
		if err != nil {
			t.Fatalf("re-encoding %+v: %v", req, err)
		}
		var again run.Request
		if err := json.Unmarshal(body, &again); err != nil {
			t.Fatalf("decoding re-encoded request %s: %v", body, err)
		}
		if run.Digest(again) != run.Digest(req) {
			t.Fatalf("round trip changed the request: %+v became %+v", req, again)
		}
	})
}
