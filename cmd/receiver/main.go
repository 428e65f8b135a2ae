// Command receiver serves scriptrun over HTTP. It accepts run.requested
// CloudEvents on PORT and replies to each with a run.completed event.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"time"

	"knative.dev/pkg/logging"
	"knative.dev/pkg/signals"

	"github.com/scriptrun/scriptrun/function"
	"github.com/scriptrun/scriptrun/function/receiver"
)

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig file for the Kubernetes runner; overrides KUBECONFIG")
	flag.Parse()

	ctx := signals.NewContext()
	if err := run(ctx, *kubeconfig); err != nil {
		fmt.Fprintln(os.Stderr, "receiver:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, kubeconfig string) error {
	cfg, err := function.LoadConfig()
	if err != nil {
		return err
	}
	if kubeconfig != "" {
		cfg.Kubeconfig = kubeconfig
	}
	logger, _ := logging.NewLogger("", cfg.LogLevel)
	defer func() { _ = logger.Sync() }()
	ctx = logging.WithLogger(ctx, logger)

	fn := function.NewWithConfig(cfg)
	if err := fn.Start(ctx, nil); err != nil {
		return err
	}
	defer func() { _ = fn.Stop(context.WithoutCancel(ctx)) }()

	address := cfg.ListenAddress(fn.UsesLocalRunner())
	listener, err := net.Listen("tcp", address)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", address, err)
	}
	recv := receiver.New(fn, receiver.Options{
		MaxBodyBytes:  cfg.MaxBodyBytes(),
		ShutdownGrace: time.Duration(cfg.ShutdownGraceSeconds) * time.Second,
		StatusFor:     function.HTTPStatus,
	})

	// Requests must outlive the signal: Shutdown decides when in-flight runs
	// end, after the grace period.
	served := make(chan error, 1)
	go func() { served <- recv.Serve(context.WithoutCancel(ctx), listener) }()
	logger.Infow("Receiver listening", "address", listener.Addr().String())

	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	logger.Info("Shutting down: draining runs in flight")
	shutdownErr := recv.Shutdown(context.WithoutCancel(ctx))
	return errors.Join(shutdownErr, <-served)
}
