package run

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits are the bounds on what a request may ask for.
type Limits struct {
	// MaxScriptBytes and MaxStdinBytes cap the script and stdin sizes.
	MaxScriptBytes int
	MaxStdinBytes  int
	// DefaultTimeout applies when a request sets no timeoutSeconds.
	DefaultTimeout time.Duration
	// MaxTimeout is the largest timeoutSeconds a request may set.
	MaxTimeout time.Duration
}

// Request field limits that are not configurable.
const (
	// MaxRequestIDLength is the longest requestId accepted, in characters.
	MaxRequestIDLength = 256
	// MaxArgs is the largest number of args accepted.
	MaxArgs = 64
	// MaxArgBytes is the longest single arg accepted, in bytes.
	MaxArgBytes = 4096
)

// Validator turns requests into Specs.
type Validator struct {
	// Runtimes is the runtime table, by language name.
	Runtimes map[string]Runtime
	Limits   Limits
}

// Spec validates req and derives the run's identity from its requestId, or,
// when that is absent, from the event's source and id. It returns a
// *RejectedError naming the first invalid field.
func (v Validator) Spec(req Request, source, eventID string) (Spec, error) {
	runtime, err := v.validate(req)
	if err != nil {
		return Spec{}, err
	}

	timeout := v.Limits.DefaultTimeout
	if req.TimeoutSeconds != nil {
		timeout = time.Duration(*req.TimeoutSeconds) * time.Second
	}
	// The digest covers the effective timeout, so an explicit default and an
	// omitted one are the same request.
	effective := req
	effective.TimeoutSeconds = IntPtr(int(timeout / time.Second))
	id := ID(req.RequestID, source, eventID)
	requestID := req.RequestID
	if requestID == "" {
		requestID = id
	}
	return Spec{
		ID:        id,
		RequestID: requestID,
		Digest:    Digest(effective),
		Derived:   req.RequestID == "",
		Language:  req.Language,
		Runtime:   runtime,
		Script:    req.Script,
		Stdin:     req.Stdin,
		Args:      req.Args,
		Timeout:   timeout,
	}, nil
}

func (v Validator) validate(req Request) (Runtime, error) {
	if req.Language == "" {
		return Runtime{}, reject("language", "missing: set it to one of %s", v.languages())
	}
	runtime, ok := v.Runtimes[req.Language]
	if !ok {
		return Runtime{}, reject("language", "unknown language %q: use one of %s", truncateForMessage(req.Language), v.languages())
	}

	if req.Script == "" {
		return Runtime{}, reject("script", "missing: set it to the main file's source")
	}
	if !utf8.ValidString(req.Script) {
		return Runtime{}, reject("script", "not valid UTF-8: send the source as UTF-8 text")
	}
	if len(req.Script) > v.Limits.MaxScriptBytes {
		return Runtime{}, reject("script", "%d bytes is over the limit of %d bytes: send a smaller script",
			len(req.Script), v.Limits.MaxScriptBytes)
	}

	if err := validateRequestID(req.RequestID); err != nil {
		return Runtime{}, err
	}
	if len(req.Stdin) > v.Limits.MaxStdinBytes {
		return Runtime{}, reject("stdin", "%d bytes is over the limit of %d bytes: send less input",
			len(req.Stdin), v.Limits.MaxStdinBytes)
	}
	if !utf8.ValidString(req.Stdin) {
		return Runtime{}, reject("stdin", "not valid UTF-8: send stdin as UTF-8 text")
	}
	if err := validateArgs(req.Args); err != nil {
		return Runtime{}, err
	}

	if t := req.TimeoutSeconds; t != nil {
		max := int(v.Limits.MaxTimeout / time.Second)
		if *t < 1 || *t > max {
			return Runtime{}, reject("timeoutSeconds", "%d is out of range: set 1 to %d", *t, max)
		}
	}
	return runtime, nil
}

func validateRequestID(id string) error {
	if n := utf8.RuneCountInString(id); n > MaxRequestIDLength {
		return reject("requestId", "%d characters is over the limit of %d: send a shorter id", n, MaxRequestIDLength)
	}
	if !utf8.ValidString(id) {
		return reject("requestId", "not valid UTF-8: send a printable string")
	}
	for _, r := range id {
		if !unicode.IsPrint(r) {
			return reject("requestId", "contains the non-printable character %U: send a printable string", r)
		}
	}
	return nil
}

func validateArgs(args []string) error {
	if len(args) > MaxArgs {
		return reject("args", "%d args is over the limit of %d: send fewer", len(args), MaxArgs)
	}
	for i, arg := range args {
		field := "args[" + itoa(i) + "]"
		if len(arg) > MaxArgBytes {
			return reject(field, "%d bytes is over the limit of %d bytes: send a shorter arg", len(arg), MaxArgBytes)
		}
		if strings.ContainsRune(arg, 0) {
			return reject(field, "contains a NUL byte, which no process argument can hold: remove it")
		}
		if !utf8.ValidString(arg) {
			return reject(field, "not valid UTF-8: send args as UTF-8 text")
		}
	}
	return nil
}

func (v Validator) languages() string {
	names := make([]string, 0, len(v.Runtimes))
	for name := range v.Runtimes {
		names = append(names, name)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// truncateForMessage shortens a user-supplied value quoted in a message.
func truncateForMessage(s string) string {
	const max = 64
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	return string([]rune(s)[:max]) + "..."
}

// Digest returns a hash of everything in req that changes what runs. Two
// requests with the same requestId and different digests are a conflict.
func Digest(req Request) string {
	req.RequestID = ""
	// encoding/json fails only on channels, functions, cyclic values and
	// invalid floats, and Request has none of them.
	body, _ := json.Marshal(req)
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])
}

// ConflictMessage explains why a run id that already names a different
// request is rejected, in terms of what the sender controls.
func ConflictMessage(spec Spec) string {
	if spec.Derived {
		return "the event's source and id were already used for a different request: send it with a new event id"
	}
	return fmt.Sprintf("requestId %q was already used for a different request: send a new requestId", spec.RequestID)
}
