package function

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/kelseyhightower/envconfig"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/scriptrun/scriptrun/function/run"
)

// Runner names accepted by SCRIPTRUN_RUNNER.
const (
	RunnerAuto       = "auto"
	RunnerLocal      = "local"
	RunnerKubernetes = "kubernetes"
)

// maxConfigMapBytes is the API server's limit on the total size of a
// ConfigMap's data (keys and values), from k8s.io/api core validation.
const maxConfigMapBytes = 1 << 20

// configMapKeyOverhead reserves room for the ConfigMap's key names.
const configMapKeyOverhead = 64

// Config is the receiver's configuration, read once from the environment at
// start-up. Every field has a default; Validate checks ranges.
type Config struct {
	// Port is the TCP port the HTTP receiver listens on.
	Port int `envconfig:"PORT" default:"8080"`

	// ListenHost is the address the receiver listens on. Empty means every
	// interface with the Kubernetes runner and 127.0.0.1 with the local one.
	ListenHost string `envconfig:"SCRIPTRUN_LISTEN_HOST"`

	// Runner selects where scripts run: "local" runs them as processes on
	// this machine, "kubernetes" as Jobs, and "auto" picks "kubernetes" when
	// a kubeconfig is named or the receiver runs in a pod, "local" otherwise.
	Runner string `envconfig:"SCRIPTRUN_RUNNER" default:"auto"`

	// Kubeconfig is the kubeconfig file for the Kubernetes runner. It is
	// never guessed: an empty value means in-cluster config or none.
	Kubeconfig string `envconfig:"KUBECONFIG"`

	// Namespace is the namespace that holds the runs' ConfigMaps and Jobs.
	Namespace string `envconfig:"SCRIPTRUN_NAMESPACE" default:"scriptrun-runs"`

	// RequestType is the CloudEvents type the receiver accepts.
	RequestType string `envconfig:"SCRIPTRUN_REQUEST_TYPE" default:"run.requested"`

	// ReplyType is the CloudEvents type of the reply.
	ReplyType string `envconfig:"SCRIPTRUN_REPLY_TYPE" default:"run.completed"`

	// ReplySource is the CloudEvents source of the reply.
	ReplySource string `envconfig:"SCRIPTRUN_REPLY_SOURCE" default:"/scriptrun/receiver"`

	// JobTemplate is the path of the Job template. Empty means the template
	// built into the binary, templates/job_template.yaml.
	JobTemplate string `envconfig:"SCRIPTRUN_JOB_TEMPLATE"`

	// Runtimes is the path of the runtime table. Empty means the table built
	// into the binary, templates/runtimes.yaml.
	Runtimes string `envconfig:"SCRIPTRUN_RUNTIMES"`

	// DefaultTimeoutSeconds is a run's time limit when the request sets none.
	DefaultTimeoutSeconds int `envconfig:"SCRIPTRUN_DEFAULT_TIMEOUT_SECONDS" default:"30"`

	// MaxTimeoutSeconds is the largest timeoutSeconds a request may set.
	MaxTimeoutSeconds int `envconfig:"SCRIPTRUN_MAX_TIMEOUT_SECONDS" default:"300"`

	// WaitMarginSeconds is added to a run's timeout to form the per-event
	// deadline. It covers scheduling, container start and log reading.
	WaitMarginSeconds int `envconfig:"SCRIPTRUN_WAIT_MARGIN_SECONDS" default:"30"`

	// MaxScriptBytes is the largest script accepted, in bytes.
	MaxScriptBytes int `envconfig:"SCRIPTRUN_MAX_SCRIPT_BYTES" default:"524288"`

	// MaxStdinBytes is the largest stdin accepted, in bytes.
	MaxStdinBytes int `envconfig:"SCRIPTRUN_MAX_STDIN_BYTES" default:"262144"`

	// MaxOutputBytes caps the output kept from a run, in bytes. Output past
	// the cap is dropped and the reply sets outputTruncated.
	MaxOutputBytes int `envconfig:"SCRIPTRUN_MAX_OUTPUT_BYTES" default:"262144"`

	// MaxInFlight caps the runs this receiver handles at once. Requests past
	// it get HTTP 429 so that the sender retries later.
	MaxInFlight int `envconfig:"SCRIPTRUN_MAX_IN_FLIGHT" default:"64"`

	// JobTTLSeconds is the Jobs' ttlSecondsAfterFinished, and how long the
	// local runner remembers a finished run for redeliveries.
	JobTTLSeconds int `envconfig:"SCRIPTRUN_JOB_TTL_SECONDS" default:"300"`

	// ShutdownGraceSeconds is how long in-flight runs may take to finish
	// after SIGTERM before they get a retryable error.
	ShutdownGraceSeconds int `envconfig:"SCRIPTRUN_SHUTDOWN_GRACE_SECONDS" default:"30"`

	// KubeQPS and KubeBurst set the Kubernetes client's rate limiter.
	KubeQPS   float32 `envconfig:"SCRIPTRUN_KUBE_QPS" default:"50"`
	KubeBurst int     `envconfig:"SCRIPTRUN_KUBE_BURST" default:"100"`

	// LogLevel is the zap level: debug, info, warn or error.
	LogLevel string `envconfig:"SCRIPTRUN_LOG_LEVEL" default:"info"`
}

// LoadConfig reads the configuration from the environment and validates it.
// It returns an error naming the first invalid variable.
func LoadConfig() (Config, error) {
	var cfg Config
	if err := envconfig.Process("", &cfg); err != nil {
		return Config{}, fmt.Errorf("reading configuration: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Validate checks ranges and combinations. Each message names the variable
// and the accepted values.
func (c Config) Validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}

	check(c.Port > 0 && c.Port < 65536, "PORT=%d is invalid: set a TCP port between 1 and 65535", c.Port)
	check(c.Runner == RunnerAuto || c.Runner == RunnerLocal || c.Runner == RunnerKubernetes,
		"SCRIPTRUN_RUNNER=%q is invalid: set auto, local or kubernetes", c.Runner)
	check(c.Namespace != "", "SCRIPTRUN_NAMESPACE is empty: set the namespace for runs")
	check(c.Namespace == "" || len(validation.IsDNS1123Label(c.Namespace)) == 0,
		"SCRIPTRUN_NAMESPACE=%q is invalid: set a namespace name (lowercase letters, digits and -)", c.Namespace)
	check(c.RequestType != "", "SCRIPTRUN_REQUEST_TYPE is empty: set the CloudEvents type to accept")
	check(c.ReplyType != "", "SCRIPTRUN_REPLY_TYPE is empty: set the CloudEvents type of replies")
	check(c.ReplySource != "", "SCRIPTRUN_REPLY_SOURCE is empty: set the CloudEvents source of replies")
	check(c.MaxTimeoutSeconds >= 1 && c.MaxTimeoutSeconds <= 86400,
		"SCRIPTRUN_MAX_TIMEOUT_SECONDS=%d is invalid: set 1 to 86400", c.MaxTimeoutSeconds)
	check(c.DefaultTimeoutSeconds >= 1 && c.DefaultTimeoutSeconds <= c.MaxTimeoutSeconds,
		"SCRIPTRUN_DEFAULT_TIMEOUT_SECONDS=%d is invalid: set 1 to SCRIPTRUN_MAX_TIMEOUT_SECONDS (%d)",
		c.DefaultTimeoutSeconds, c.MaxTimeoutSeconds)
	check(c.WaitMarginSeconds >= 1 && c.WaitMarginSeconds <= 3600,
		"SCRIPTRUN_WAIT_MARGIN_SECONDS=%d is invalid: set 1 to 3600", c.WaitMarginSeconds)
	check(c.MaxScriptBytes >= 1, "SCRIPTRUN_MAX_SCRIPT_BYTES=%d is invalid: set a positive size", c.MaxScriptBytes)
	check(c.MaxStdinBytes >= 0, "SCRIPTRUN_MAX_STDIN_BYTES=%d is invalid: set 0 or more", c.MaxStdinBytes)
	check(c.MaxScriptBytes+c.MaxStdinBytes <= maxConfigMapBytes-configMapKeyOverhead,
		"SCRIPTRUN_MAX_SCRIPT_BYTES + SCRIPTRUN_MAX_STDIN_BYTES = %d is too large: both are stored in one ConfigMap, so keep the sum at most %d",
		c.MaxScriptBytes+c.MaxStdinBytes, maxConfigMapBytes-configMapKeyOverhead)
	check(c.MaxOutputBytes >= 1 && c.MaxOutputBytes <= 16<<20,
		"SCRIPTRUN_MAX_OUTPUT_BYTES=%d is invalid: set 1 to 16777216", c.MaxOutputBytes)
	check(c.MaxInFlight >= 1, "SCRIPTRUN_MAX_IN_FLIGHT=%d is invalid: set 1 or more", c.MaxInFlight)
	check(c.JobTTLSeconds >= 0, "SCRIPTRUN_JOB_TTL_SECONDS=%d is invalid: set 0 or more", c.JobTTLSeconds)
	check(c.ShutdownGraceSeconds >= 1, "SCRIPTRUN_SHUTDOWN_GRACE_SECONDS=%d is invalid: set 1 or more", c.ShutdownGraceSeconds)
	check(c.KubeQPS > 0, "SCRIPTRUN_KUBE_QPS=%v is invalid: set a positive rate", c.KubeQPS)
	check(c.KubeBurst >= 1, "SCRIPTRUN_KUBE_BURST=%d is invalid: set 1 or more", c.KubeBurst)
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("SCRIPTRUN_LOG_LEVEL=%q is invalid: set debug, info, warn or error", c.LogLevel))
	}
	return errors.Join(errs...)
}

// runDeadline is the per-event deadline for a run limited to timeout.
func (c Config) runDeadline(timeout time.Duration) time.Duration {
	return timeout + time.Duration(c.WaitMarginSeconds)*time.Second
}

// MaxBodyBytes is the largest HTTP request body the receiver reads. It leaves
// room for JSON escaping of the largest script, stdin and args, which in the
// worst case, control characters, takes six bytes per byte.
func (c Config) MaxBodyBytes() int64 {
	return int64(6*(c.MaxScriptBytes+c.MaxStdinBytes+run.MaxArgs*run.MaxArgBytes)) + 64<<10
}

// ListenAddress is the address the receiver listens on. The local runner
// runs any script as the receiver's user, so it listens on loopback unless
// SCRIPTRUN_LISTEN_HOST is set.
func (c Config) ListenAddress(local bool) string {
	host := c.ListenHost
	if host == "" && local {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, strconv.Itoa(c.Port))
}
