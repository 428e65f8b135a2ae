#!/usr/bin/env bash
# Build scriptrun's four images with docker or podman:
#
#   runtime-python  images/python    the Python runtime for runs
#   runtime-node    images/node      the Node.js runtime for runs
#   receiver        images/receiver  the Knative Service (target "receiver")
#   sweeper         images/receiver  the clean-up CronJob (target "sweeper")
#
# Usage: images/build.sh [--push]
#
# Environment:
#   REGISTRY          image name prefix (default ghcr.io/scriptrun)
#   TAG               image tag (default 0.1.0, the tag the manifests use)
#   CONTAINER_ENGINE  docker or podman (default: the first one that reaches
#                     a running engine)
#   PLATFORM          passed to --platform when set, such as linux/amd64
#
# Exits 1 with a message when no engine is reachable, because a client
# without an engine (as on a machine without a Docker daemon) cannot build.
set -euo pipefail

REGISTRY=${REGISTRY:-ghcr.io/scriptrun}
TAG=${TAG:-0.1.0}
PUSH=false

for argument in "$@"; do
  case "$argument" in
    --push) PUSH=true ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build.sh: unknown argument $argument. Run images/build.sh --help for usage." >&2; exit 2 ;;
  esac
done

root=$(cd "$(dirname "$0")/.." && pwd)

# find_engine prints the first engine whose "info" command reaches a server.
find_engine() {
  local candidate
  for candidate in ${CONTAINER_ENGINE:-docker podman}; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" info >/dev/null 2>&1; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

if ! engine=$(find_engine); then
  echo "build.sh: no container engine is reachable (tried: ${CONTAINER_ENGINE:-docker podman}). No image was built." >&2
  echo "build.sh: install and start Docker or Podman, or set CONTAINER_ENGINE to one that runs." >&2
  exit 1
fi

platform_args=()
if [[ -n "${PLATFORM:-}" ]]; then
  platform_args=(--platform "$PLATFORM")
fi

# build NAME CONTEXT DOCKERFILE [TARGET]
build() {
  local image="$REGISTRY/$1:$TAG" context=$2 dockerfile=$3 target=${4:-}
  local target_args=()
  if [[ -n "$target" ]]; then
    target_args=(--target "$target")
  fi
  echo "build.sh: building $image with $engine"
  "$engine" build "${platform_args[@]}" "${target_args[@]}" -f "$dockerfile" -t "$image" "$context"
  if [[ "$PUSH" == true ]]; then
    "$engine" push "$image"
  fi
}

build runtime-python "$root/images/python" "$root/images/python/Dockerfile"
build runtime-node "$root/images/node" "$root/images/node/Dockerfile"
build receiver "$root" "$root/images/receiver/Dockerfile" receiver
build sweeper "$root" "$root/images/receiver/Dockerfile" sweeper
echo "build.sh: built $REGISTRY/{runtime-python,runtime-node,receiver,sweeper}:$TAG"
