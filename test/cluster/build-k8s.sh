#!/usr/bin/env bash
# Build kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and
# kubectl at $K8S_VERSION from the Go module proxy into $K8S_BIN. Does nothing
# when that directory already contains a complete build.
#
# k8s.io/kubernetes is not meant to be required as a module: its go.mod
# replaces the k8s.io/* staging modules with ./staging directories. A
# throwaway wrapper module requires it and replaces each staging module with
# its published v0.<minor>.<patch> release instead.
set -euo pipefail
. "$(dirname "$0")/env.sh"

COMMANDS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)
STAMP=$K8S_BIN/.complete

if [ -f "$STAMP" ]; then
	echo "build-k8s: cached in $K8S_BIN"
	exit 0
fi

export GOMODCACHE=$LAB/gomod
export GOCACHE=$LAB/gocache-k8s
export GOFLAGS=-mod=mod
export GOTOOLCHAIN=local
export CGO_ENABLED=0

WRAPPER=$LAB/src/k8s-$K8S_VERSION
mkdir -p "$WRAPPER"
cd "$WRAPPER"
started=$(date +%s.%N)

go mod download -json "k8s.io/kubernetes@$K8S_VERSION" >/dev/null
kubernetes_mod=$GOMODCACHE/cache/download/k8s.io/kubernetes/@v/$K8S_VERSION.mod
echo "build-k8s: downloaded k8s.io/kubernetes $K8S_VERSION in $(elapsed_since "$started")s"

# Staging modules are published as v0.<minor>.<patch>: v1.34.4 -> v0.34.4.
staging_version=v0.${K8S_VERSION#v1.}
{
	echo "module scriptrun-e2e/k8sbuild"
	echo
	# The same go and godebug lines as Kubernetes, so the binaries get the
	# GODEBUG defaults that Kubernetes is built and tested with.
	grep -E '^(go|godebug) ' "$kubernetes_mod"
	echo
	echo "require k8s.io/kubernetes $K8S_VERSION"
	echo
	grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "$kubernetes_mod" |
		awk -v version="$staging_version" '{ print "replace " $1 " => " $1 " " version }'
} >go.mod

{
	echo "//go:build tools"
	echo
	echo "// Package tools imports the commands so that go mod tidy keeps their dependencies."
	echo "package tools"
	echo
	echo "import ("
	for command in "${COMMANDS[@]}"; do
		echo "	_ \"k8s.io/kubernetes/cmd/$command\""
	done
	echo ")"
} >tools.go

step=$(date +%s.%N)
go mod tidy
echo "build-k8s: go mod tidy in $(elapsed_since "$step")s"

# Without these the binaries report v0.0.0: in /version, in the node's
# kubeletVersion, and in kubectl version.
minor=${K8S_VERSION#v1.}
minor=${minor%%.*}
ldflags="-s -w"
for package in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags+=" -X $package.gitVersion=$K8S_VERSION"
	ldflags+=" -X $package.gitMajor=1 -X $package.gitMinor=$minor"
	ldflags+=" -X $package.gitTreeState=clean"
done

# One go build for all five commands lets them share compiled packages, and
# the binaries land in $K8S_BIN only after all of them linked.
step=$(date +%s.%N)
staging_dir=$K8S_BIN.partial
rm -rf "$staging_dir"
mkdir -p "$staging_dir"
packages=()
for command in "${COMMANDS[@]}"; do
	packages+=("k8s.io/kubernetes/cmd/$command")
done
go build -trimpath -ldflags "$ldflags" -o "$staging_dir/" "${packages[@]}"
echo "build-k8s: go build of ${#COMMANDS[@]} commands in $(elapsed_since "$step")s"

touch "$staging_dir/.complete"
rm -rf "$K8S_BIN"
mv "$staging_dir" "$K8S_BIN"
"$KUBECTL" version --client | head -n 1
echo "build-k8s: done in $(elapsed_since "$started")s ($(du -sh "$K8S_BIN" | cut -f1) in $K8S_BIN)"
