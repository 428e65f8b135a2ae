// Command mkimage turns a root filesystem tarball into a single-layer image
// and writes it as a docker-archive tarball that `ctr images import` reads.
// It works offline: the e2e test cluster has no registry to push to, and
// crane's mutate subcommand needs one.
//
// Usage:
//
//	mkimage -rootfs rootfs.tar -tag ghcr.io/org/image:1.0 -o image.tar \
//	    [-entrypoint ARG]... [-cmd ARG]... [-env KEY=VALUE]... [-user UID:GID] [-workdir DIR]
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// defaultPath is the PATH that Docker and containerd give a container whose
// image sets none.
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// repeatedFlag collects every occurrence of a flag, in order.
type repeatedFlag []string

func (f *repeatedFlag) String() string { return strings.Join(*f, " ") }

func (f *repeatedFlag) Set(value string) error {
	*f = append(*f, value)
	return nil
}

type options struct {
	rootfs     string
	tag        string
	output     string
	arch       string
	user       string
	workdir    string
	entrypoint repeatedFlag
	cmd        repeatedFlag
	env        repeatedFlag
}

func main() {
	err := run(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	opts, err := parseFlags(args)
	if err != nil {
		return err
	}

	ref, err := name.NewTag(opts.tag)
	if err != nil {
		return fmt.Errorf("invalid -tag %q: %w", opts.tag, err)
	}

	image, err := buildImage(opts)
	if err != nil {
		return err
	}

	if err := tarball.WriteToFile(opts.output, ref, image); err != nil {
		return fmt.Errorf("writing %s: %w", opts.output, err)
	}
	return nil
}

func parseFlags(args []string) (options, error) {
	var opts options
	flags := flag.NewFlagSet("mkimage", flag.ContinueOnError)
	flags.StringVar(&opts.rootfs, "rootfs", "", "root filesystem tarball that becomes the only layer (required)")
	flags.StringVar(&opts.tag, "tag", "", "image reference stored in the archive, such as localhost/app:dev (required)")
	flags.StringVar(&opts.output, "o", "", "docker-archive tarball to write (required)")
	flags.StringVar(&opts.arch, "arch", runtime.GOARCH, "image architecture")
	flags.StringVar(&opts.user, "user", "", "user the container runs as, as UID:GID or a name in the image's /etc/passwd")
	flags.StringVar(&opts.workdir, "workdir", "", "working directory of the container")
	flags.Var(&opts.entrypoint, "entrypoint", "one entrypoint argument; repeat for more (default: none)")
	flags.Var(&opts.cmd, "cmd", "one command argument; repeat for more (default: none)")
	flags.Var(&opts.env, "env", "one KEY=VALUE environment variable; repeat for more (PATH defaults to the usual system path)")
	if err := flags.Parse(args); err != nil {
		return options{}, err
	}

	var missing []string
	required := []struct{ flag, value string }{
		{"-rootfs", opts.rootfs}, {"-tag", opts.tag}, {"-o", opts.output},
	}
	for _, r := range required {
		if r.value == "" {
			missing = append(missing, r.flag)
		}
	}
	if len(missing) > 0 {
		return options{}, fmt.Errorf("missing required flags %s", strings.Join(missing, ", "))
	}
	for _, entry := range opts.env {
		if !strings.Contains(entry, "=") {
			return options{}, fmt.Errorf("invalid -env %q: want KEY=VALUE", entry)
		}
	}
	return opts, nil
}

func buildImage(opts options) (v1.Image, error) {
	layer, err := tarball.LayerFromFile(opts.rootfs)
	if err != nil {
		return nil, fmt.Errorf("reading layer %s: %w", opts.rootfs, err)
	}
	image, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, fmt.Errorf("adding layer %s: %w", opts.rootfs, err)
	}

	configFile, err := image.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading image config: %w", err)
	}
	configFile = configFile.DeepCopy()
	configFile.OS = "linux"
	configFile.Architecture = opts.arch
	configFile.Config.Entrypoint = opts.entrypoint
	configFile.Config.Cmd = opts.cmd
	configFile.Config.Env = withDefaultPath(opts.env)
	configFile.Config.User = opts.user
	configFile.Config.WorkingDir = opts.workdir

	image, err = mutate.ConfigFile(image, configFile)
	if err != nil {
		return nil, fmt.Errorf("setting image config: %w", err)
	}
	return image, nil
}

// withDefaultPath returns env with defaultPath prepended unless env sets PATH.
func withDefaultPath(env []string) []string {
	for _, entry := range env {
		if strings.HasPrefix(entry, "PATH=") {
			return env
		}
	}
	return append([]string{defaultPath}, env...)
}
