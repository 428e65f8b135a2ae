package kube

import (
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/scriptrun/scriptrun/function/run"
)

// FuzzRenderJob renders the built-in template for fuzzed request ids, args
// and images. Whatever they hold, the Job keeps its structure: one container
// whose command is the fixed prefix, the runtime command, the script path and
// the args verbatim, and valid names and labels.
func FuzzRenderJob(f *testing.F) {
	f.Add("submission-1", "--verbose", "ghcr.io/x/y:1")
	f.Add("{{JOB_NAME}}", "{{ARGS}}\x00{{REQUEST_ID}}", "{{IMAGE_NAME}}")
	f.Add("a\nb: c", "- x\n- y", "img\"\n  evil: true")
	f.Add(strings.Repeat("ü", 300), "}}{{", "*anchor")

	tmpl, err := LoadTemplate("")
	if err != nil {
		f.Fatal(err)
	}
	r := NewRunner(nil, nil, Options{Namespace: "runs", Template: tmpl, JobTTL: time.Minute, JobDeadlineMargin: 10 * time.Second, MaxOutputBytes: 10})

	f.Fuzz(func(t *testing.T, requestID, joinedArgs, image string) {
		if !utf8.ValidString(joinedArgs) || !utf8.ValidString(image) {
			return // Validation and the runtime table reject these before rendering.
		}
		args := strings.Split(joinedArgs, "\x00")
		runtime := run.Runtime{Image: image, Command: []string{"python3", "-u"}, FileExtension: "py"}
		spec := run.Spec{ID: run.ID(requestID, "/fuzz", "1"), RequestID: requestID, Digest: "d",
			Language: "python", Runtime: runtime, Args: args, Timeout: 5 * time.Second}

		job, err := r.newJob(spec)
		if image == "" || strings.TrimSpace(image) != image {
			if err == nil {
				t.Fatalf("a Job with the image %q was accepted", image)
			}
			return
		}
		if err != nil {
			t.Fatalf("newJob(%q, %q, %q): %v", requestID, args, image, err)
		}
		containers := job.Spec.Template.Spec.Containers
		if len(containers) != 1 {
			t.Fatalf("got %d containers, want 1", len(containers))
		}
		command := containers[0].Command
		wantTail := append([]string{"python3", "-u", "/script/run_tests.py"}, args...)
		if len(command) != 4+len(wantTail) || !slices.Equal(command[4:], wantTail) {
			t.Fatalf("command = %q, want 4 fixed items then %q", command, wantTail)
		}
		if containers[0].Image != image {
			t.Fatalf("image = %q, want %q", containers[0].Image, image)
		}
		if job.Name != JobName(spec.ID) || job.Labels[RunIDLabel] != spec.ID {
			t.Fatalf("name %q and run id label %q do not derive from run id %q", job.Name, job.Labels[RunIDLabel], spec.ID)
		}
	})
}
