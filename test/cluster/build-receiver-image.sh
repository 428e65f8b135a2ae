#!/usr/bin/env bash
# Build the project's ./cmd/receiver and ./cmd/sweeper as static binaries into
# one image, $RECEIVER_IMAGE, and import it into the running test cluster's
# containerd. The image has no shell or libc:
#   /usr/local/bin/receiver  the entrypoint
#   /usr/local/bin/sweeper   run it with command: [/usr/local/bin/sweeper]
#   /etc/passwd, /etc/group  root and nonroot (UID and GID 65532), the user
#                            the image runs as
#   /etc/ssl/certs           the build machine's CA bundle, if it has one
# Builds on every call: the binaries change with every commit.
#
# Usage: build-receiver-image.sh [--no-import | --import-only]
#   --no-import    only write the image tar, $LAB/receiver-image/receiver.tar;
#                  needs no running cluster
#   --import-only  only import the tar that an earlier --no-import wrote
set -euo pipefail
. "$(dirname "$0")/env.sh"
require_root

NONROOT_UID=65532
COMMANDS=(receiver sweeper)
WORK=$LAB/receiver-image
# Two runs at once would share $WORK, so the second waits for the first.
mkdir -p "$LAB"
exec 9>"$LAB/receiver-image.lock"
flock 9
IMAGE_TAR=$WORK/receiver.tar

usage() {
	echo "usage: $0 [--no-import | --import-only]" >&2
	exit 2
}

build_image() {
	cd "$REPO_ROOT"
	local command
	for command in "${COMMANDS[@]}"; do
		if ! compgen -G "cmd/$command/*.go" >/dev/null; then
			echo "error: ./cmd/$command has no Go files yet, so $RECEIVER_IMAGE cannot be built;" \
				"add the command or skip this script" >&2
			exit 1
		fi
	done

	local root=$WORK/root
	rm -rf "$WORK"
	mkdir -p "$root/usr/local/bin" "$root/etc" "$root/tmp"
	chmod 1777 "$root/tmp"
	for command in "${COMMANDS[@]}"; do
		CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$root/usr/local/bin/$command" "./cmd/$command"
	done

	cat >"$root/etc/passwd" <<EOF
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:$NONROOT_UID:$NONROOT_UID:nonroot:/home/nonroot:/sbin/nologin
EOF
	cat >"$root/etc/group" <<EOF
root:x:0:
nonroot:x:$NONROOT_UID:
EOF
	# Trusted CAs for HTTPS beyond the API server, whose CA comes with the
	# service account token.
	if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
		mkdir -p "$root/etc/ssl/certs"
		cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
	fi
	tar --numeric-owner --owner=0 --group=0 -C "$root" -cf "$WORK/rootfs.tar" .

	if [ ! -x "$TOOLS_BIN/mkimage" ]; then
		(
			cd "$CLUSTER_DIR/tools/mkimage" &&
				GOMODCACHE=$LAB/gomod GOCACHE=$LAB/gocache-tools CGO_ENABLED=0 \
					go build -trimpath -o "$TOOLS_BIN/mkimage" .
		)
	fi
	"$TOOLS_BIN/mkimage" -rootfs "$WORK/rootfs.tar" -tag "$RECEIVER_IMAGE" \
		-entrypoint /usr/local/bin/receiver -user "$NONROOT_UID:$NONROOT_UID" -o "$IMAGE_TAR"
	rm -rf "$root" "$WORK/rootfs.tar"
}

import_image() {
	if [ ! -f "$IMAGE_TAR" ]; then
		echo "error: $IMAGE_TAR not found; run $0 --no-import first" >&2
		exit 1
	fi
	if [ ! -S "$CONTAINERD_SOCKET" ]; then
		echo "error: the test cluster is not running (no $CONTAINERD_SOCKET); run test/cluster/up.sh first" >&2
		exit 1
	fi
	ctr --address "$CONTAINERD_SOCKET" -n k8s.io images import "$IMAGE_TAR" >/dev/null
}

started=$(date +%s.%N)
case "${1:-}" in
--no-import)
	build_image
	echo "build-receiver-image: $IMAGE_TAR written in $(elapsed_since "$started")s"
	;;
--import-only)
	import_image
	echo "build-receiver-image: $RECEIVER_IMAGE imported in $(elapsed_since "$started")s"
	;;
"")
	if [ ! -S "$CONTAINERD_SOCKET" ]; then
		echo "error: the test cluster is not running (no $CONTAINERD_SOCKET); run test/cluster/up.sh first" >&2
		exit 1
	fi
	build_image
	import_image
	echo "build-receiver-image: $RECEIVER_IMAGE built and imported in $(elapsed_since "$started")s"
	;;
*) usage ;;
esac
