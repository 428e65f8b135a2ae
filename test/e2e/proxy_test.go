//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/scriptrun/scriptrun/function/kube"
)

// This file contains the tools of the fault tests. faultProxy is a reverse
// proxy for the Kubernetes API that delays, fails or cuts requests on the
// test's command. faultReceiver runs the receiver binary as a separate process,
// so that a test can send it SIGKILL or SIGTERM.

// faultProxy forwards plain HTTP from a receiver on 127.0.0.1 to the test
// cluster's API server over TLS, trusting the cluster CA. Requests reach the
// API server with the receiver's ServiceAccount token, never the admin's
// credentials. Rules set at runtime hold or fail the requests they match;
// every request is recorded.
type faultProxy struct {
	// URL is the proxy's base URL, http://127.0.0.1:port.
	URL string

	listener  net.Listener
	server    *http.Server
	upstream  *http.Transport
	forwarder *httputil.ReverseProxy
	// closed ends every held request when the test ends.
	closed chan struct{}

	unreachable atomic.Bool
	// token is the bearer token that Kubeconfig was given.
	token atomic.Value

	mu       sync.Mutex
	holds    []*faultProxyHold
	failures []faultProxyFailure
	// watches cancels the open watch streams, by request number.
	watches map[int]context.CancelFunc
	// goneWatches is how many of the next watch requests get 410 Gone.
	goneWatches int
	requests    []faultProxyRequest
}

// faultProxyRequest is one request as the proxy saw it.
type faultProxyRequest struct {
	Method string
	Path   string
	Watch  bool
	// Status is the HTTP status sent to the receiver: 0 while the request
	// is in progress or when its connection was closed without a response.
	Status int
	Start  time.Time
}

// faultProxyHold keeps matching requests from being forwarded until Release is
// called, the receiver drops the request or the test ends.
type faultProxyHold struct {
	method string
	path   *regexp.Regexp
	// arrived is closed when the first matching request arrives.
	arrived     chan struct{}
	arrivedOnce sync.Once
	released    chan struct{}
	releaseOnce sync.Once
}

// Arrived is closed when the first request that the hold matches arrives.
func (h *faultProxyHold) Arrived() <-chan struct{} { return h.arrived }

// Release forwards the held requests and every later one.
func (h *faultProxyHold) Release() { h.releaseOnce.Do(func() { close(h.released) }) }

// faultProxyFailureMode is how the proxy fails a request.
type faultProxyFailureMode int

const (
	// faultWith503 responds 503 Service Unavailable with a Status body, as
	// an API server that is up but cannot serve does.
	faultWith503 faultProxyFailureMode = iota
	// faultByClosing closes the connection without a response, which is
	// how an unreachable API server looks to a client.
	faultByClosing
)

type faultProxyFailure struct {
	method string
	path   *regexp.Regexp
	mode   faultProxyFailureMode
}

// startFaultProxy starts a proxy to the test cluster's API server on a
// loopback port. It closes when the test ends, releasing held requests.
func startFaultProxy(t *testing.T) *faultProxy {
	t.Helper()
	target, err := url.Parse(cluster.Config.Host)
	require.NoError(t, err, "parsing the API server URL %q", cluster.Config.Host)

	caData := cluster.Config.CAData
	if len(caData) == 0 && cluster.Config.CAFile != "" {
		caData, err = os.ReadFile(cluster.Config.CAFile)
		require.NoError(t, err)
	}
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(caData), "the cluster CA has no PEM certificate")

	p := &faultProxy{
		closed:  make(chan struct{}),
		watches: make(map[int]context.CancelFunc),
		upstream: &http.Transport{
			Proxy:           nil,
			TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: cluster.Config.ServerName, MinVersion: tls.VersionTLS12},
			// Up to 8 runs in flight and their watches each hold a connection.
			MaxIdleConnsPerHost: 16,
		},
	}
	p.forwarder = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			if token, _ := p.token.Load().(string); token != "" && r.Out.Header.Get("Authorization") == "" {
				r.Out.Header.Set("Authorization", "Bearer "+token)
			}
		},
		Transport: p.upstream,
		// Write every chunk at once, so watch events and logs stream through.
		FlushInterval: -1,
		ErrorLog:      log.New(io.Discard, "", 0),
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			http.Error(w, "proxy: forwarding to the API server failed: "+err.Error(), http.StatusBadGateway)
		},
	}

	listener, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p.listener = &faultProxyListener{Listener: listener, proxy: p}
	p.URL = "http://" + listener.Addr().String()
	p.server = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = p.server.Serve(p.listener)
	}()

	t.Cleanup(func() {
		close(p.closed)
		p.CloseWatches(0)
		_ = p.server.Close()
		<-served
		p.upstream.CloseIdleConnections()
	})
	return p
}

// Kubeconfig writes a kubeconfig whose server is the proxy, with token and
// no CA, and returns its path.
//
// NOTE: clientcmd drops a kubeconfig's credentials when the server URL is
// plain HTTP (client-go v0.33 ClientConfig reads them only for TLS), so the
// receiver sends no Authorization header. The proxy adds token to each
// request that has none, which keeps the receiver's identity.
func (p *faultProxy) Kubeconfig(t *testing.T, token string) string {
	t.Helper()
	p.token.Store(token)
	config := clientcmdapi.NewConfig()
	config.Clusters["e2e-proxy"] = &clientcmdapi.Cluster{Server: p.URL}
	config.AuthInfos["receiver"] = &clientcmdapi.AuthInfo{Token: token}
	config.Contexts["e2e-proxy"] = &clientcmdapi.Context{Cluster: "e2e-proxy", AuthInfo: "receiver"}
	config.CurrentContext = "e2e-proxy"
	path := filepath.Join(t.TempDir(), "proxy.kubeconfig")
	require.NoError(t, clientcmd.WriteToFile(*config, path))
	return path
}

// Hold holds the requests whose method and URL path match until the
// returned hold is released. pathPattern is a regular expression.
func (p *faultProxy) Hold(method, pathPattern string) *faultProxyHold {
	hold := &faultProxyHold{
		method:   method,
		path:     regexp.MustCompile(pathPattern),
		arrived:  make(chan struct{}),
		released: make(chan struct{}),
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.holds = append(p.holds, hold)
	return hold
}

// Fail fails the requests whose method and URL path match, in mode.
func (p *faultProxy) Fail(method, pathPattern string, mode faultProxyFailureMode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failures = append(p.failures, faultProxyFailure{method: method, path: regexp.MustCompile(pathPattern), mode: mode})
}

// ClearRules releases every hold and drops every failure rule.
func (p *faultProxy) ClearRules() {
	p.mu.Lock()
	holds := p.holds
	p.holds, p.failures, p.goneWatches = nil, nil, 0
	p.mu.Unlock()
	for _, hold := range holds {
		hold.Release()
	}
	p.unreachable.Store(false)
}

// SetUnreachable makes the API server look unreachable: the proxy closes
// every new connection, closes the connection of every request on an
// existing one, and cuts the open watch streams.
func (p *faultProxy) SetUnreachable() {
	p.unreachable.Store(true)
	p.CloseWatches(0)
}

// CloseWatches cuts every open watch stream, as an API server restart
// does. It responds to the next goneNext watch requests with 410 Gone ("too
// old resource version"), as a restarted API server does when its watch
// cache starts after the client's resource version.
func (p *faultProxy) CloseWatches(goneNext int) {
	p.mu.Lock()
	p.goneWatches = goneNext
	cancels := make([]context.CancelFunc, 0, len(p.watches))
	for _, cancel := range p.watches {
		cancels = append(cancels, cancel)
	}
	p.mu.Unlock()
	for _, cancel := range cancels {
		cancel()
	}
}

// OpenWatches counts the watch streams in progress.
func (p *faultProxy) OpenWatches() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.watches)
}

// Requests returns a copy of the requests recorded so far, in arrival order.
func (p *faultProxy) Requests() []faultProxyRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]faultProxyRequest(nil), p.requests...)
}

// CountRequests counts the recorded requests with method, a path matching
// pathPattern and status; a status of -1 matches any.
func (p *faultProxy) CountRequests(method, pathPattern string, status int) int {
	path := regexp.MustCompile(pathPattern)
	n := 0
	for _, r := range p.Requests() {
		if r.Method == method && path.MatchString(r.Path) && (status == -1 || r.Status == status) {
			n++
		}
	}
	return n
}

func (p *faultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := p.record(r)
	if p.unreachable.Load() {
		faultHangUp(w)
		return
	}

	if hold := p.matchingHold(r); hold != nil {
		// The server notices a closed connection, and ends the request's
		// context, only once the handler has read the body to its end.
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))

		hold.arrivedOnce.Do(func() { close(hold.arrived) })
		select {
		case <-hold.released:
		case <-r.Context().Done():
		case <-p.closed:
		}
		if r.Context().Err() != nil || faultClosed(p.closed) {
			return // The receiver went away or the test ended: forward nothing.
		}
	}

	if failure, ok := p.matchingFailure(r); ok {
		if failure.mode == faultByClosing {
			faultHangUp(w)
			return
		}
		p.setStatus(id, http.StatusServiceUnavailable)
		faultWriteStatus(w, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable,
			"proxy: the API server is unavailable")
		return
	}

	if r.URL.Query().Get("watch") == "true" {
		if p.takeGone() {
			p.setStatus(id, http.StatusGone)
			faultWriteStatus(w, http.StatusGone, metav1.StatusReasonExpired,
				"too old resource version: 1 (2)")
			return
		}
		ctx, cancel := context.WithCancel(r.Context())
		p.mu.Lock()
		p.watches[id] = cancel
		p.mu.Unlock()
		defer func() {
			p.mu.Lock()
			delete(p.watches, id)
			p.mu.Unlock()
			cancel()
		}()
		r = r.WithContext(ctx)
	}

	recorder := &faultStatusRecorder{ResponseWriter: w}
	// ReverseProxy panics with http.ErrAbortHandler when a stream is cut,
	// so the status is stored in a defer.
	defer func() { p.setStatus(id, recorder.status) }()
	p.forwarder.ServeHTTP(recorder, r)
}

func (p *faultProxy) record(r *http.Request) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests = append(p.requests, faultProxyRequest{
		Method: r.Method, Path: r.URL.Path, Watch: r.URL.Query().Get("watch") == "true", Start: time.Now(),
	})
	return len(p.requests) - 1
}

func (p *faultProxy) setStatus(id, status int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests[id].Status = status
}

func (p *faultProxy) matchingHold(r *http.Request) *faultProxyHold {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, hold := range p.holds {
		if hold.method == r.Method && hold.path.MatchString(r.URL.Path) {
			return hold
		}
	}
	return nil
}

func (p *faultProxy) matchingFailure(r *http.Request) (faultProxyFailure, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, failure := range p.failures {
		if failure.method == r.Method && failure.path.MatchString(r.URL.Path) {
			return failure, true
		}
	}
	return faultProxyFailure{}, false
}

func (p *faultProxy) takeGone() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.goneWatches == 0 {
		return false
	}
	p.goneWatches--
	return true
}

func faultClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// faultHangUp closes the request's connection without writing a response.
func faultHangUp(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler) // Closes the connection all the same.
	}
	_ = conn.Close()
}

// faultWriteStatus responds with a metav1.Status body, as the API server does.
func faultWriteStatus(w http.ResponseWriter, code int, reason metav1.StatusReason, message string) {
	body, _ := json.Marshal(&metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure, Message: message, Reason: reason, Code: int32(code),
	})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

// faultStatusRecorder keeps the status that the ReverseProxy writes. Unwrap lets
// http.ResponseController reach the connection's Flush.
type faultStatusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *faultStatusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *faultStatusRecorder) Write(data []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(data)
}

func (r *faultStatusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// faultProxyListener closes new connections while the proxy plays an
// unreachable API server.
type faultProxyListener struct {
	net.Listener
	proxy *faultProxy
}

func (l *faultProxyListener) Accept() (net.Conn, error) {
	for {
		conn, err := l.Listener.Accept()
		if err != nil || !l.proxy.unreachable.Load() {
			return conn, err
		}
		_ = conn.Close()
	}
}

// The receiver binary, built once per test binary.
var (
	faultReceiverBuild     sync.Once
	faultReceiverBinary    string
	faultReceiverBuildErr  error
	faultReceiverBuildTime time.Duration
)

// buildFaultReceiver builds ./cmd/receiver once and returns the binary's
// path. It runs inside the cluster's network namespace, where the module
// proxy is unreachable, so it uses only the module cache. The binary
// replaces the previous test run's at a fixed path, so runs leave one file.
func buildFaultReceiver(t *testing.T) string {
	t.Helper()
	faultReceiverBuild.Do(func() {
		start := time.Now()
		dir := filepath.Join(os.TempDir(), "scriptrun-e2e-receiver")
		if faultReceiverBuildErr = os.MkdirAll(dir, 0o755); faultReceiverBuildErr != nil {
			return
		}
		building := filepath.Join(dir, "receiver-"+strconv.Itoa(os.Getpid()))
		cmd := exec.Command("go", "build", "-o", building, "./cmd/receiver")
		cmd.Dir = "../.."
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off")
		output, err := cmd.CombinedOutput()
		if err != nil {
			faultReceiverBuildErr = fmt.Errorf("go build ./cmd/receiver: %w\n%s", err, output)
			return
		}
		// A rename is atomic, so a concurrent test binary never starts a
		// half-written file.
		faultReceiverBinary = filepath.Join(dir, "receiver")
		faultReceiverBuildErr = os.Rename(building, faultReceiverBinary)
		faultReceiverBuildTime = time.Since(start)
	})
	require.NoError(t, faultReceiverBuildErr)
	return faultReceiverBinary
}

// faultReceiver is cmd/receiver running as a child process.
type faultReceiver struct {
	// URL is the receiver's base URL on 127.0.0.1.
	URL  string
	Port int

	cmd    *exec.Cmd
	output *faultOutputBuffer
	exited chan struct{}
	// exitErr is cmd.Wait's error, set before exited is closed.
	exitErr error
}

// startFaultReceiver runs the receiver binary with the Kubernetes runner,
// kubeconfig and namespace, on a free loopback port, with a minimal
// environment: the variables below, overridden or extended by env. It waits
// for /readyz. When the test ends the process is killed if it still runs,
// and on failure its output goes to the test log.
func startFaultReceiver(t *testing.T, kubeconfig, namespace string, env map[string]string) *faultReceiver {
	t.Helper()
	binary := buildFaultReceiver(t)
	port := faultFreePort(t)

	vars := map[string]string{
		"PORT":                              strconv.Itoa(port),
		"SCRIPTRUN_RUNNER":                  "kubernetes",
		"KUBECONFIG":                        kubeconfig,
		"SCRIPTRUN_NAMESPACE":               namespace,
		"SCRIPTRUN_REPLY_SOURCE":            "/scriptrun/e2e",
		"SCRIPTRUN_JOB_TTL_SECONDS":         "60",
		"SCRIPTRUN_WAIT_MARGIN_SECONDS":     "30",
		"SCRIPTRUN_SHUTDOWN_GRACE_SECONDS":  "5",
		"SCRIPTRUN_LOG_LEVEL":               "debug",
		"SCRIPTRUN_DEFAULT_TIMEOUT_SECONDS": "30",
	}
	for name, value := range env {
		vars[name] = value
	}
	receiver := &faultReceiver{
		URL:    "http://127.0.0.1:" + strconv.Itoa(port),
		Port:   port,
		output: &faultOutputBuffer{},
		exited: make(chan struct{}),
	}
	receiver.cmd = exec.Command(binary)
	for name, value := range vars {
		receiver.cmd.Env = append(receiver.cmd.Env, name+"="+value)
	}
	receiver.cmd.Stdout = receiver.output
	receiver.cmd.Stderr = receiver.output
	require.NoError(t, receiver.cmd.Start(), "starting %s", binary)
	go func() {
		receiver.exitErr = receiver.cmd.Wait()
		close(receiver.exited)
	}()

	t.Cleanup(func() {
		receiver.Kill(t)
		if t.Failed() {
			t.Logf("---- output of receiver process %d:\n%s", receiver.cmd.Process.Pid, receiver.output.String())
		}
	})

	receiver.waitReady(t, 90*time.Second)
	return receiver
}

func (r *faultReceiver) waitReady(t *testing.T, timeout time.Duration) {
	t.Helper()
	start := time.Now()
	deadline := time.After(timeout)
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get(r.URL + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Logf("receiver process %d ready on port %d after %.1fs",
					r.cmd.Process.Pid, r.Port, time.Since(start).Seconds())
				return
			}
		}
		select {
		case <-r.exited:
			t.Fatalf("receiver process %d exited before it was ready: %v\n%s",
				r.cmd.Process.Pid, r.exitErr, r.output.String())
		case <-deadline:
			t.Fatalf("receiver process %d not ready after %s\n%s", r.cmd.Process.Pid, timeout, r.output.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Kill sends SIGKILL to the receiver process, by its PID, and waits for it
// to exit. It does nothing when the process has already exited.
func (r *faultReceiver) Kill(t *testing.T) {
	t.Helper()
	select {
	case <-r.exited:
		return
	default:
	}
	err := syscall.Kill(r.cmd.Process.Pid, syscall.SIGKILL)
	if err != nil && !errors.Is(err, syscall.ESRCH) {
		t.Errorf("killing receiver process %d: %v", r.cmd.Process.Pid, err)
	}
	select {
	case <-r.exited:
	case <-time.After(10 * time.Second):
		t.Errorf("receiver process %d still runs 10s after SIGKILL", r.cmd.Process.Pid)
	}
}

// Terminate sends SIGTERM to the receiver process, by its PID.
func (r *faultReceiver) Terminate(t *testing.T) {
	t.Helper()
	require.NoError(t, syscall.Kill(r.cmd.Process.Pid, syscall.SIGTERM),
		"sending SIGTERM to receiver process %d", r.cmd.Process.Pid)
}

// WaitExit waits up to timeout for the process to exit and returns its
// exit error: nil for exit status 0.
func (r *faultReceiver) WaitExit(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case <-r.exited:
		return r.exitErr
	case <-time.After(timeout):
		t.Fatalf("receiver process %d still runs %s later", r.cmd.Process.Pid, timeout)
		return nil
	}
}

// Output returns what the process has written to stdout and stderr.
func (r *faultReceiver) Output() string { return r.output.String() }

// faultFreePort returns a TCP port that was free on 127.0.0.1 a moment
// ago. Another process may take it before the receiver listens, in which
// case the receiver fails to start and the test fails with its output.
func faultFreePort(t *testing.T) int {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := listener.Addr().(*net.TCPAddr).Port
	require.NoError(t, listener.Close())
	return port
}

// faultOutputBuffer is a bytes.Buffer safe for concurrent writes and reads.
type faultOutputBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *faultOutputBuffer) Write(data []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(data)
}

func (b *faultOutputBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// grantFaultReceiver grants the receiver rules in namespace (the
// deployment's Role when rules is nil), like GrantReceiver, and returns a
// kubeconfig that reaches the API server through proxy with the
// ServiceAccount's token.
func grantFaultReceiver(t *testing.T, namespace string, rules []rbacv1.PolicyRule, proxy *faultProxy) string {
	t.Helper()
	direct, err := clientcmd.LoadFromFile(GrantReceiver(t, namespace, rules))
	require.NoError(t, err)
	authInfo := direct.AuthInfos[direct.Contexts[direct.CurrentContext].AuthInfo]
	require.NotEmpty(t, authInfo.Token, "the receiver kubeconfig has no token")
	return proxy.Kubeconfig(t, authInfo.Token)
}

// faultJobCreations records the UID of every Job that a watch saw in a
// namespace, so a test can count the Jobs ever created under a name, even
// those deleted since.
type faultJobCreations struct {
	mu   sync.Mutex
	uids map[string]map[types.UID]bool
}

// faultWatchJobCreations starts recording the Jobs of namespace until the test
// ends.
func faultWatchJobCreations(t *testing.T, namespace string) *faultJobCreations {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	jobs := cluster.Client.BatchV1().Jobs(namespace)
	list, err := jobs.List(ctx, metav1.ListOptions{})
	require.NoError(t, err, "listing jobs in %s", namespace)

	created := &faultJobCreations{uids: make(map[string]map[types.UID]bool)}
	for i := range list.Items {
		created.add(&list.Items[i])
	}
	watcher, err := watchtools.NewRetryWatcherWithContext(ctx, list.ResourceVersion, &cache.ListWatch{
		WatchFuncWithContext: func(ctx context.Context, options metav1.ListOptions) (watch.Interface, error) {
			return jobs.Watch(ctx, options)
		},
	})
	require.NoError(t, err, "watching jobs in %s", namespace)
	go func() {
		defer watcher.Stop()
		for event := range watcher.ResultChan() {
			if job, ok := event.Object.(*batchv1.Job); ok {
				created.add(job)
			}
		}
	}()
	return created
}

func (c *faultJobCreations) add(job *batchv1.Job) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.uids[job.Name] == nil {
		c.uids[job.Name] = make(map[types.UID]bool)
	}
	c.uids[job.Name][job.UID] = true
}

// Count returns how many Jobs named name the watch has seen.
func (c *faultJobCreations) Count(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.uids[name])
}

// faultAsyncReply is the outcome of PostEvent run in a goroutine.
type faultAsyncReply struct {
	Reply Reply
	Err   error
}

// faultPostAsync sends an event from a goroutine and delivers the outcome on
// the returned channel.
func faultPostAsync(ctx context.Context, url, eventID string, data any) <-chan faultAsyncReply {
	replies := make(chan faultAsyncReply, 1)
	go func() {
		reply, err := PostEvent(ctx, url, eventID, data)
		replies <- faultAsyncReply{Reply: reply, Err: err}
	}()
	return replies
}

// faultReceiveReply waits for an asynchronous reply and fails the test when ctx
// ends first.
func faultReceiveReply(ctx context.Context, t *testing.T, replies <-chan faultAsyncReply) faultAsyncReply {
	t.Helper()
	select {
	case reply := <-replies:
		return reply
	case <-ctx.Done():
		t.Fatalf("no reply before the test's deadline: %v", context.Cause(ctx))
		return faultAsyncReply{}
	}
}

// faultPollUntil calls condition every interval until it returns true, and fails
// the test when ctx ends first or condition returns an error.
func faultPollUntil(ctx context.Context, t *testing.T, interval time.Duration, what string, condition func(context.Context) (bool, error)) {
	t.Helper()
	err := wait.PollUntilContextCancel(ctx, interval, true, condition)
	require.NoError(t, err, "waiting until %s", what)
}

// faultScriptStarted reports whether a pod of the run has a script
// container that is running or has run.
func faultScriptStarted(ctx context.Context, namespace, runID string) (bool, error) {
	pods, err := cluster.Client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{
		LabelSelector: kube.RunIDLabel + "=" + runID,
	})
	if err != nil {
		return false, err
	}
	for _, pod := range pods.Items {
		for _, status := range pod.Status.ContainerStatuses {
			if status.State.Running != nil || status.State.Terminated != nil {
				return true, nil
			}
		}
	}
	return false, nil
}

// faultRunConfigMaps lists the ConfigMaps labelled with the run id.
func faultRunConfigMaps(ctx context.Context, t *testing.T, namespace, runID string) []corev1.ConfigMap {
	t.Helper()
	list, err := cluster.Client.CoreV1().ConfigMaps(namespace).List(ctx, metav1.ListOptions{
		LabelSelector: kube.RunIDLabel + "=" + runID,
	})
	require.NoError(t, err, "listing configmaps of run %s", runID)
	return list.Items
}
