// Package receiver serves a CloudEvents handler over HTTP. It decodes binary
// and structured events, rejects malformed requests with 400, writes the
// handler's reply event, and maps the handler's errors to HTTP statuses.
package receiver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"knative.dev/pkg/logging"
)

// Handler is the function the receiver serves, such as *function.Function.
type Handler interface {
	Handle(ctx context.Context, e event.Event) (*event.Event, error)
	Ready(ctx context.Context) (bool, error)
	Drain()
	AbortRuns()
}

// Options configure a Receiver.
type Options struct {
	// MaxBodyBytes caps a request's body; larger requests get 413.
	MaxBodyBytes int64
	// ShutdownGrace is how long in-flight runs may go on after Shutdown
	// begins.
	ShutdownGrace time.Duration
	// StatusFor maps a handler error to an HTTP status.
	StatusFor func(error) int
}

// Receiver is the HTTP side of scriptrun.
type Receiver struct {
	handler Handler
	opts    Options
	server  *http.Server
}

// New returns a Receiver for handler.
func New(handler Handler, opts Options) *Receiver {
	r := &Receiver{handler: handler, opts: opts}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("GET /readyz", r.serveReady)
	mux.HandleFunc("POST /{$}", r.serveEvent)
	r.server = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		// Bounds reading the whole request, so a sender that trickles its
		// body cannot hold a connection. Runs take longer, but the handler
		// reads the body before the run starts.
		ReadTimeout: time.Minute,
		IdleTimeout: 2 * time.Minute,
	}
	return r
}

// Serve accepts connections on l until Shutdown. It returns nil after a
// clean shutdown.
func (r *Receiver) Serve(ctx context.Context, l net.Listener) error {
	r.server.BaseContext = func(net.Listener) context.Context { return ctx }
	if err := r.server.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving on %s: %w", l.Addr(), err)
	}
	return nil
}

// Shutdown stops accepting connections and new runs, then waits for the
// runs in flight. At the end of the grace period it aborts the runs still in
// flight, whose senders get 503 and redeliver, and waits a little longer for
// those responses to be written.
func (r *Receiver) Shutdown(ctx context.Context) error {
	logger := logging.FromContext(ctx)
	r.handler.Drain()

	timer := time.AfterFunc(r.opts.ShutdownGrace, func() {
		logger.Warn("Shutdown grace period over; aborting runs in flight")
		r.handler.AbortRuns()
	})
	defer timer.Stop()

	// Aborted runs respond within the run's cleanup bound; past that, close.
	ctx, cancel := context.WithTimeout(ctx, r.opts.ShutdownGrace+15*time.Second)
	defer cancel()
	if err := r.server.Shutdown(ctx); err != nil {
		_ = r.server.Close()
		return fmt.Errorf("shutting down the HTTP server: %w", err)
	}
	return nil
}

func (r *Receiver) serveReady(w http.ResponseWriter, req *http.Request) {
	if ok, err := r.handler.Ready(req.Context()); !ok || err != nil {
		http.Error(w, "not ready", http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (r *Receiver) serveEvent(w http.ResponseWriter, req *http.Request) {
	ctx := req.Context()
	logger := logging.FromContext(ctx)
	req.Body = http.MaxBytesReader(w, req.Body, r.opts.MaxBodyBytes)

	e, err := cehttp.NewEventFromHTTPRequest(req)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			http.Error(w, fmt.Sprintf("request body is over the limit of %d bytes", tooLarge.Limit), http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "not a valid CloudEvent: "+clip(err.Error()), http.StatusBadRequest)
		return
	}
	if err := e.Validate(); err != nil {
		http.Error(w, "not a valid CloudEvent: "+clip(err.Error()), http.StatusBadRequest)
		return
	}

	reply, err := r.handler.Handle(ctx, *e)
	if err != nil {
		status := r.opts.StatusFor(err)
		if status != http.StatusBadRequest {
			w.Header().Set("Retry-After", "5")
		}
		http.Error(w, clip(err.Error()), status)
		return
	}
	if reply == nil {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	if err := cehttp.WriteResponseWriter(ctx, binding.ToMessage(reply), http.StatusOK, w); err != nil {
		logger.Errorw("Writing reply failed", "eventId", reply.ID(), "error", err)
	}
}

// maxErrorBytes caps an error body, which can quote values the sender chose.
const maxErrorBytes = 1024

func clip(msg string) string {
	if len(msg) <= maxErrorBytes {
		return msg
	}
	return strings.ToValidUTF8(msg[:maxErrorBytes], "") + "..."
}
