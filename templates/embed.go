// Package templates holds the default Job template and runtime table, built
// into the binaries so that they run from any directory. SCRIPTRUN_JOB_TEMPLATE
// and SCRIPTRUN_RUNTIMES name files that replace them.
package templates

import _ "embed"

// JobTemplate is the default Job template, job_template.yaml.
//
//go:embed job_template.yaml
var JobTemplate []byte

// Runtimes is the default runtime table, runtimes.yaml.
//
//go:embed runtimes.yaml
var Runtimes []byte
