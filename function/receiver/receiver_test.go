package receiver_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/scriptrun/scriptrun/function"
	"github.com/scriptrun/scriptrun/function/receiver"
	"github.com/scriptrun/scriptrun/function/run"
)

// server is a receiver with the local runner on a loopback port.
type server struct {
	url  string
	recv *receiver.Receiver
	done chan error
}

func testConfig() function.Config {
	return function.Config{
		Port: 8080, Runner: function.RunnerLocal, Namespace: "runs",
		RequestType: "run.requested", ReplyType: "run.completed", ReplySource: "/test",
		DefaultTimeoutSeconds: 10, MaxTimeoutSeconds: 60, WaitMarginSeconds: 10,
		MaxScriptBytes: 10000, MaxStdinBytes: 1000, MaxOutputBytes: 4096, MaxInFlight: 8,
		JobTTLSeconds: 60, ShutdownGraceSeconds: 5, KubeQPS: 1, KubeBurst: 1, LogLevel: "info",
	}
}

func startServer(t *testing.T, cfg function.Config) *server {
	t.Helper()
	fn := function.NewWithConfig(cfg)
	require.NoError(t, fn.Start(context.Background(), nil))
	t.Cleanup(func() { _ = fn.Stop(context.Background()) })

	listener, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &server{
		url: "http://" + listener.Addr().String(),
		recv: receiver.New(fn, receiver.Options{
			MaxBodyBytes:  cfg.MaxBodyBytes(),
			ShutdownGrace: time.Duration(cfg.ShutdownGraceSeconds) * time.Second,
			StatusFor:     function.HTTPStatus,
		}),
		done: make(chan error, 1),
	}
	go func() { s.done <- s.recv.Serve(context.Background(), listener) }()
	t.Cleanup(func() {
		_ = s.recv.Shutdown(context.Background())
		<-s.done
	})
	return s
}

type response struct {
	status int
	header http.Header
	body   string
}

func (r response) result(t *testing.T) run.Result {
	t.Helper()
	require.Equal(t, http.StatusOK, r.status, r.body)
	var result run.Result
	require.NoError(t, json.Unmarshal([]byte(r.body), &result), r.body)
	return result
}

func post(t *testing.T, url string, header map[string]string, body string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	require.NoError(t, err)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return response{status: resp.StatusCode, header: resp.Header, body: string(data)}
}

// binary sends data as a binary-mode run.requested event with id eventID.
func binary(t *testing.T, url, eventID, data string) response {
	t.Helper()
	return post(t, url, map[string]string{
		"Ce-Specversion": "1.0", "Ce-Type": "run.requested", "Ce-Source": "/tests",
		"Ce-Id": eventID, "Content-Type": "application/json",
	}, data)
}

// structured sends data as a structured-mode run.requested event.
func structured(t *testing.T, url, eventID, data string) response {
	t.Helper()
	body := fmt.Sprintf(`{"specversion":"1.0","type":"run.requested","source":"/tests","id":%q,`+
		`"datacontenttype":"application/json","data":%s}`, eventID, data)
	return post(t, url, map[string]string{"Content-Type": "application/cloudevents+json"}, body)
}

func TestReceiverRunsScripts(t *testing.T) {
	s := startServer(t, testConfig())
	tests := []struct {
		name         string
		send         func(*testing.T, string, string, string) response
		data         string
		wantStatus   run.Status
		wantExitCode int
		wantOutput   string
	}{
		{"python in binary mode", binary, `{"language":"python","script":"print('hi')"}`, run.StatusSucceeded, 0, "hi\n"},
		{"node in structured mode", structured, `{"language":"node","script":"console.log('hi')"}`, run.StatusSucceeded, 0, "hi\n"},
		{"python exits with 3", binary, `{"language":"python","script":"import sys; sys.exit(3)"}`, run.StatusFailed, 3, ""},
		{"infinite loop with 2s timeout", structured, `{"language":"python","script":"while True: pass","timeoutSeconds":2}`, run.StatusTimedOut, 137, ""},
		{"stdin and args", binary, `{"language":"python","script":"import sys; print(sys.argv[1], input())","stdin":"in","args":["a"]}`, run.StatusSucceeded, 0, "a in\n"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := tt.send(t, s.url, fmt.Sprintf("event-%d", i), tt.data)

			result := resp.result(t)
			assert.Equal(t, tt.wantStatus, result.Status, result.Message)
			require.NotNil(t, result.ExitCode)
			assert.Equal(t, tt.wantExitCode, *result.ExitCode)
			assert.Equal(t, tt.wantOutput, result.Output)
			assert.Equal(t, "run.completed", resp.header.Get("Ce-Type"))
			assert.Equal(t, "/test", resp.header.Get("Ce-Source"))
			assert.Equal(t, result.RequestID, resp.header.Get("Ce-Subject"))
			assert.Equal(t, "application/json", resp.header.Get("Content-Type"))
		})
	}
}

func TestReceiverRejectsInvalidData(t *testing.T) {
	s := startServer(t, testConfig())
	tests := []struct {
		name     string
		data     string
		wantText string
	}{
		{"unknown language", `{"language":"cobol","script":"x"}`, `language: unknown language "cobol": use one of node, python`},
		{"missing script", `{"language":"python"}`, "script: missing"},
		{"script too large", `{"language":"python","script":"` + strings.Repeat("x", 10001) + `"}`, "script: 10001 bytes is over the limit of 10000 bytes"},
		{"timeout over maximum", `{"language":"python","script":"x","timeoutSeconds":61}`, "timeoutSeconds: 61 is out of range: set 1 to 60"},
		{"timeout not an integer", `{"language":"python","script":"x","timeoutSeconds":"5"}`, "timeoutSeconds must be an integer"},
		{"unknown field", `{"language":"python","script":"x","timeout":5}`, `unknown field "timeout"`},
		{"not JSON", `print(1)`, "data: invalid JSON"},
		{"key in another case", `{"language":"python","script":"print(1)","Script":"print(2)"}`, `unknown field "Script"`},
		{"duplicate key", `{"language":"python","script":"print(1)","script":"print(2)"}`, "script: given twice"},
		{"null data", `null`, "data: missing"},
		{"array data", `[1]`, "data: must be a JSON object, not a JSON array"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := binary(t, s.url, fmt.Sprintf("bad-%d", i), tt.data)

			result := resp.result(t)
			assert.Equal(t, run.StatusRejected, result.Status)
			assert.Contains(t, result.Message, tt.wantText)
			assert.Nil(t, result.ExitCode)
			assert.NotEmpty(t, resp.header.Get("Ce-Id"))
		})
	}
}

func TestReceiverAnswersMalformedRequests(t *testing.T) {
	s := startServer(t, testConfig())
	tests := []struct {
		name       string
		header     map[string]string
		body       string
		wantStatus int
		wantText   string
	}{
		{"not a CloudEvent", map[string]string{"Content-Type": "text/plain"}, "hello", http.StatusBadRequest, "not a valid CloudEvent"},
		{"missing id", map[string]string{"Ce-Specversion": "1.0", "Ce-Type": "run.requested", "Ce-Source": "/t"}, "{}", http.StatusBadRequest, "id"},
		{"broken structured JSON", map[string]string{"Content-Type": "application/cloudevents+json"}, "{", http.StatusBadRequest, "not a valid CloudEvent"},
		{"other event type", map[string]string{"Ce-Specversion": "1.0", "Ce-Type": "push", "Ce-Source": "/t", "Ce-Id": "1"}, "{}", http.StatusBadRequest, `event type "push" is not handled`},
		{"body over the limit", map[string]string{"Ce-Specversion": "1.0", "Ce-Type": "run.requested", "Ce-Source": "/t", "Ce-Id": "1", "Content-Type": "application/json"},
			strings.Repeat(" ", int(testConfig().MaxBodyBytes())+1), http.StatusRequestEntityTooLarge, "over the limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := post(t, s.url, tt.header, tt.body)

			assert.Equal(t, tt.wantStatus, resp.status)
			assert.Contains(t, resp.body, tt.wantText)
		})
	}
}

func TestReceiverRepliesIdenticallyToRedelivery(t *testing.T) {
	s := startServer(t, testConfig())
	data := `{"language":"python","script":"import time; print(time.time())","requestId":"submission-7"}`

	first := binary(t, s.url, "delivery-1", data)
	second := structured(t, s.url, "delivery-2", data)

	assert.Equal(t, first.body, second.body)
	assert.Equal(t, first.header.Get("Ce-Id"), second.header.Get("Ce-Id"))
	assert.Equal(t, "submission-7", first.header.Get("Ce-Subject"))
}

func TestReceiverHealth(t *testing.T) {
	s := startServer(t, testConfig())
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(s.url + path)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode, path)
	}
}

func TestReceiverThrottlesPastInFlightCap(t *testing.T) {
	cfg := testConfig()
	cfg.MaxInFlight = 1
	s := startServer(t, cfg)

	slow := make(chan response, 1)
	go func() {
		// A plain goroutine: no assertions here, only the response.
		req, _ := http.NewRequest(http.MethodPost, s.url, strings.NewReader(`{"language":"python","script":"import time; time.sleep(2)"}`))
		req.Header = http.Header{"Ce-Specversion": {"1.0"}, "Ce-Type": {"run.requested"}, "Ce-Source": {"/t"}, "Ce-Id": {"slow"}, "Content-Type": {"application/json"}}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			slow <- response{status: -1, body: err.Error()}
			return
		}
		resp.Body.Close()
		slow <- response{status: resp.StatusCode}
	}()
	time.Sleep(500 * time.Millisecond)

	resp := binary(t, s.url, "fast", `{"language":"python","script":"print(1)"}`)

	assert.Equal(t, http.StatusTooManyRequests, resp.status)
	assert.Contains(t, resp.body, "SCRIPTRUN_MAX_IN_FLIGHT")
	assert.NotEmpty(t, resp.header.Get("Retry-After"))
	assert.Equal(t, http.StatusOK, (<-slow).status)
}

func TestReceiverShutdownDrainsRuns(t *testing.T) {
	cfg := testConfig()
	cfg.ShutdownGraceSeconds = 3
	s := startServer(t, cfg)

	type outcome struct {
		status int
		err    error
	}
	send := func(id, script string, out chan<- outcome) {
		req, _ := http.NewRequest(http.MethodPost, s.url, strings.NewReader(`{"language":"python","script":"`+script+`"}`))
		req.Header = http.Header{"Ce-Specversion": {"1.0"}, "Ce-Type": {"run.requested"}, "Ce-Source": {"/t"}, "Ce-Id": {id}, "Content-Type": {"application/json"}}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			out <- outcome{err: err}
			return
		}
		resp.Body.Close()
		out <- outcome{status: resp.StatusCode}
	}
	short, long := make(chan outcome, 1), make(chan outcome, 1)
	go send("short", "import time; time.sleep(1)", short)
	go send("long", "import time; time.sleep(30)", long)
	time.Sleep(300 * time.Millisecond)

	start := time.Now()
	require.NoError(t, s.recv.Shutdown(context.Background()))

	shortOut, longOut := <-short, <-long
	require.NoError(t, shortOut.err)
	require.NoError(t, longOut.err)
	assert.Equal(t, http.StatusOK, shortOut.status, "a run that fits in the grace period finishes")
	assert.Equal(t, http.StatusServiceUnavailable, longOut.status, "a run past the grace period is answered with a retryable status")
	assert.Less(t, time.Since(start), 10*time.Second)

	_, err := http.Post(s.url, "application/json", strings.NewReader("{}"))
	assert.Error(t, err, "no new connections after shutdown")
}

func TestReceiverServesEventsOnlyAtRoot(t *testing.T) {
	s := startServer(t, testConfig())

	resp := binary(t, s.url+"/other", "path-1", `{"language":"python","script":"print(1)"}`)

	assert.Equal(t, http.StatusNotFound, resp.status)
}
