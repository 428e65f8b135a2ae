// Package run defines scriptrun's domain: a run's request, its identity, its
// result, and the Runner that turns one into the other. It imports neither
// CloudEvents nor Kubernetes.
package run

import (
	"context"
	"time"
)

// Status is the outcome of a run, as reported in run.completed.
type Status string

// The statuses a run can end with.
const (
	// StatusSucceeded means the script exited with code 0.
	StatusSucceeded Status = "succeeded"
	// StatusFailed means the script exited with a non-zero code.
	StatusFailed Status = "failed"
	// StatusTimedOut means the script was killed at its time limit.
	StatusTimedOut Status = "timed_out"
	// StatusOOMKilled means the script was killed at its memory limit.
	StatusOOMKilled Status = "oom_killed"
	// StatusRejected means the request was invalid; nothing ran.
	StatusRejected Status = "rejected"
	// StatusError means scriptrun could not run the script, for a reason
	// that retrying would not fix, such as a Job the API server rejects.
	StatusError Status = "error"
)

// Statuses lists every Status, in documentation order.
var Statuses = []Status{StatusSucceeded, StatusFailed, StatusTimedOut, StatusOOMKilled, StatusRejected, StatusError}

// Request is the data of a run.requested event.
type Request struct {
	// Language names an entry of the runtime table, such as python or node.
	Language string `json:"language"`
	// Script is the main file's source, as UTF-8 text.
	Script string `json:"script"`
	// RequestID is the caller's id for the run. Optional.
	RequestID string `json:"requestId,omitempty"`
	// Stdin is passed to the script's standard input. Optional.
	Stdin string `json:"stdin,omitempty"`
	// Args are passed to the script as its arguments. Optional.
	Args []string `json:"args,omitempty"`
	// TimeoutSeconds limits the run's time. Optional; bounded by the
	// receiver's maximum.
	TimeoutSeconds *int `json:"timeoutSeconds,omitempty"`
}

// Result is the data of a run.completed event.
type Result struct {
	// RequestID is the request's requestId, or the derived run id when the
	// request had none.
	RequestID string `json:"requestId"`
	// Language is the request's language.
	Language string `json:"language"`
	// Status is the run's outcome.
	Status Status `json:"status"`
	// ExitCode is the script's exit code, present when the script ran. A
	// script killed by a signal reports 128 plus the signal number.
	ExitCode *int `json:"exitCode,omitempty"`
	// Output is the script's stdout and stderr, interleaved, as UTF-8.
	// Each run of invalid UTF-8 bytes is replaced by one U+FFFD.
	Output string `json:"output"`
	// OutputBase64 holds the exact output bytes, base64-encoded, when they
	// are not valid UTF-8. Absent otherwise.
	OutputBase64 string `json:"outputBase64,omitempty"`
	// OutputTruncated is true when the output passed the receiver's cap.
	OutputTruncated bool `json:"outputTruncated"`
	// Message is the reason, for any status but succeeded.
	Message string `json:"message,omitempty"`
	// StartedAt is when the script started, if it did.
	StartedAt *time.Time `json:"startedAt,omitempty"`
	// FinishedAt is when the script ended, if it did.
	FinishedAt *time.Time `json:"finishedAt,omitempty"`
	// DurationMs is FinishedAt minus StartedAt, in milliseconds.
	DurationMs *int64 `json:"durationMs,omitempty"`
}

// Spec is a validated request with everything a Runner needs.
type Spec struct {
	// ID is the run's identity: deterministic, label-safe and at most
	// IDMaxLength characters.
	ID string
	// RequestID is the caller's id, or ID when the caller gave none.
	RequestID string
	// Derived is true when the caller gave no requestId, so ID derives from
	// the event's source and id.
	Derived bool
	// Digest is a hash of the request's content, used to detect a
	// requestId reused for a different request.
	Digest string
	// Language is the runtime's name.
	Language string
	// Runtime is the runtime table's entry for Language.
	Runtime Runtime
	// Script, Stdin and Args are the request's.
	Script string
	Stdin  string
	Args   []string
	// Timeout is the run's time limit.
	Timeout time.Duration
}

// Runtime is one entry of the runtime table.
type Runtime struct {
	// Image is the container image for Kubernetes runs.
	Image string `json:"image"`
	// Command is the runtime's command and flags, before the script's path.
	Command []string `json:"command"`
	// FileExtension is the script's extension, without the dot.
	FileExtension string `json:"fileExtension"`
	// LocalCommand is the command for the local runner.
	LocalCommand []string `json:"localCommand,omitempty"`
}

// Runner runs one script to completion.
//
// Run returns a Result for every run that reached a verdict, including
// scripts that failed, timed out or were killed. It returns an error only
// when the runner itself could not do its job. The error is then one of the
// classes in errors.go, or wraps one.
type Runner interface {
	Run(ctx context.Context, spec Spec) (Result, error)
}
