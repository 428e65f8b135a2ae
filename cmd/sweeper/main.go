// Command sweeper deletes stale run ConfigMaps once and exits; a CronJob runs
// it. It exits non-zero when any Kubernetes API call fails.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"k8s.io/client-go/kubernetes"
	"knative.dev/pkg/logging"
	"knative.dev/pkg/signals"

	"github.com/scriptrun/scriptrun/function/kube"
	"github.com/scriptrun/scriptrun/function/sweep"
)

type options struct {
	kubeconfig string
	namespace  string
	minAge     time.Duration
	dryRun     bool
}

func main() {
	var opts options
	flag.StringVar(&opts.kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"),
		"kubeconfig file; empty means in-cluster config")
	flag.StringVar(&opts.namespace, "namespace", envOr("SCRIPTRUN_NAMESPACE", "scriptrun-runs"), "namespace of the runs")
	flag.DurationVar(&opts.minAge, "min-age", 10*time.Minute,
		"spare ConfigMaps younger than this; keep it above the longest run's deadline")
	flag.BoolVar(&opts.dryRun, "dry-run", false, "log what would be deleted, delete nothing")
	flag.Parse()

	if err := run(signals.NewContext(), opts); err != nil {
		fmt.Fprintln(os.Stderr, "sweeper:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, opts options) error {
	if opts.minAge < 0 {
		return fmt.Errorf("--min-age=%s is invalid: set 0 or more", opts.minAge)
	}
	logger, _ := logging.NewLogger("", "info")
	defer func() { _ = logger.Sync() }()
	ctx = logging.WithLogger(ctx, logger)

	cfg, err := kube.RESTConfig(opts.kubeconfig, 20, 40)
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("creating Kubernetes client: %w", err)
	}

	report, err := sweep.New(client, sweep.Options{
		Namespace: opts.namespace,
		MinAge:    opts.minAge,
		DryRun:    opts.dryRun,
	}).Sweep(ctx)
	logger.Infow("Sweep finished", "deleted", len(report.Deleted), "kept", report.Kept, "dryRun", opts.dryRun)
	return err
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}
