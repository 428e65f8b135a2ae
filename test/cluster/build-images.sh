#!/usr/bin/env bash
# Build the images the test cluster needs, without any registry, as
# docker-archive tarballs in $IMAGE_DIR:
#   pause.tar           $PAUSE_IMAGE, the pod sandbox (tools/pause)
#   runtime-python.tar  $PYTHON_IMAGE, Debian minbase + python3
#   runtime-node.tar    $NODE_IMAGE, Debian minbase + nodejs
# Does nothing when $IMAGE_DIR already contains a complete set. $IMAGE_DIR is
# named after a hash of this script and the tool sources (env.sh), so editing
# the suite or a package list below builds a new set.
#
# The runtime images follow the project's real ones (images/): user runner
# with UID and GID 10001, HOME=/tmp, working directory /tmp, /bin/sh, no
# entrypoint. They differ in where the runtime comes from: Debian's python3
# and nodejs packages here, and no extra Python libraries.
set -euo pipefail
. "$(dirname "$0")/env.sh"
require_root

DEBIAN_SUITE=bookworm
PYTHON_PACKAGES=python3
NODE_PACKAGES=nodejs
RUNNER_UID=10001

# Print the Debian mirror that apt on this machine uses, for debootstrap.
debian_mirror() {
	local uri=
	if [ -f /etc/apt/sources.list.d/debian.sources ]; then
		uri=$(awk '$1 == "URIs:" { print $2; exit }' /etc/apt/sources.list.d/debian.sources)
	fi
	if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
		uri=$(awk '$1 == "deb" && $2 ~ /\/debian\/?$/ { print $2; exit }' /etc/apt/sources.list)
	fi
	echo "${uri:-http://deb.debian.org/debian}"
}
MIRROR=${DEBIAN_MIRROR:-$(debian_mirror)}

if [ -f "$IMAGE_DIR/.complete" ]; then
	echo "build-images: cached in $IMAGE_DIR"
	exit 0
fi

# remove_tree DIR: delete DIR after unmounting whatever is mounted below it.
# debootstrap mounts /proc and /sys, and may bind-mount /dev, inside the
# rootfs while it installs packages. An interrupted run leaves them mounted,
# so a plain rm -rf would descend into the host's /dev.
remove_tree() {
	local dir=$1 mount_point
	for mount_point in $(awk -v dir="$dir" 'index($2, dir "/") == 1 { print $2 }' /proc/self/mounts | sort -r); do
		umount -l "$mount_point"
	done
	rm -rf --one-file-system "$dir"
}

started=$(date +%s.%N)
LOGS=$LAB/logs
WORK=$IMAGE_DIR.partial
remove_tree "$WORK"
trap 'remove_tree "$WORK"' EXIT
mkdir -p "$WORK" "$LOGS" "$TOOLS_BIN"

# The tools are nested modules with their own go.mod, so none of their
# dependencies reach the project's go.mod. Their caches stay under $LAB.
build_tool() {
	local name=$1
	(
		cd "$CLUSTER_DIR/tools/$name" &&
			GOMODCACHE=$LAB/gomod GOCACHE=$LAB/gocache-tools CGO_ENABLED=0 \
				go build -trimpath -ldflags "-s -w" -o "$TOOLS_BIN/$name" .
	)
}
build_tool mkimage
build_tool pause
MKIMAGE=$TOOLS_BIN/mkimage
echo "build-images: tools built in $(elapsed_since "$started")s"

build_pause_image() {
	local root=$WORK/pause-root
	mkdir -p "$root"
	cp "$TOOLS_BIN/pause" "$root/pause"
	tar --numeric-owner --owner=0 --group=0 -C "$root" -cf "$WORK/pause-rootfs.tar" pause
	"$MKIMAGE" -rootfs "$WORK/pause-rootfs.tar" -tag "$PAUSE_IMAGE" -entrypoint /pause \
		-user 65535:65535 -o "$WORK/pause.tar"
	rm -rf "$root" "$WORK/pause-rootfs.tar"
}

# Add user and group runner (UID and GID 10001, home /tmp) to a rootfs, as
# images/python/Dockerfile does.
add_runner_user() {
	local root=$1
	chroot "$root" groupadd --gid "$RUNNER_UID" runner
	chroot "$root" useradd --uid "$RUNNER_UID" --gid "$RUNNER_UID" \
		--home-dir /tmp --no-create-home --shell /usr/sbin/nologin runner
}

# Remove what a container never reads: documentation, translations, package
# lists and caches, logs. Empty /etc/resolv.conf and /etc/hostname remain as
# mount points for the pod's own files, which the kubelet mounts there.
trim_rootfs() {
	local root=$1
	rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
		"$root"/usr/share/locale/* "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* \
		"$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old "$root"/var/log/*
	: >"$root/etc/resolv.conf"
	: >"$root/etc/hostname"
}

# build_runtime_image NAME REFERENCE PACKAGES CHECK_COMMAND [ENV...]
build_runtime_image() {
	local name=$1 reference=$2 packages=$3 check=$4
	shift 4
	local root=$WORK/$name-root step
	step=$(date +%s.%N)

	debootstrap --variant=minbase --include="$packages" "$DEBIAN_SUITE" "$root" "$MIRROR" \
		>"$LOGS/debootstrap-$name.log" 2>&1
	add_runner_user "$root"
	trim_rootfs "$root"
	# Fail here, not in a test, when the runtime does not start.
	chroot "$root" /bin/sh -c "$check" >/dev/null

	tar --numeric-owner -C "$root" -cf "$WORK/$name-rootfs.tar" .
	local env_flags=(-env HOME=/tmp)
	for entry in "$@"; do
		env_flags+=(-env "$entry")
	done
	"$MKIMAGE" -rootfs "$WORK/$name-rootfs.tar" -tag "$reference" \
		-user "$RUNNER_UID:$RUNNER_UID" -workdir /tmp "${env_flags[@]}" -o "$WORK/$name.tar"

	echo "build-images: $reference in $(elapsed_since "$step")s" \
		"(rootfs $(du -sh "$root" | cut -f1), image $(du -h "$WORK/$name.tar" | cut -f1))"
	remove_tree "$root"
	rm -f "$WORK/$name-rootfs.tar"
}

build_pause_image

# The root filesystem is read-only in run Jobs, so Python must not try to
# write .pyc files (as in images/python/Dockerfile).
build_runtime_image runtime-python "$PYTHON_IMAGE" "$PYTHON_PACKAGES" 'python3 --version' \
	PYTHONDONTWRITEBYTECODE=1 &
python_pid=$!
build_runtime_image runtime-node "$NODE_IMAGE" "$NODE_PACKAGES" 'node --version' &
node_pid=$!

failed=
for job in "runtime-python:$python_pid" "runtime-node:$node_pid"; do
	if ! wait "${job#*:}"; then
		failed+=" ${job%%:*}"
	fi
done
if [ -n "$failed" ]; then
	for name in $failed; do
		echo "build-images: building $name failed; last lines of $LOGS/debootstrap-$name.log:" >&2
		tail -n 20 "$LOGS/debootstrap-$name.log" >&2 || true
	done
	exit 1
fi

touch "$WORK/.complete"
remove_tree "$IMAGE_DIR"
mv "$WORK" "$IMAGE_DIR"
echo "build-images: done in $(elapsed_since "$started")s ($IMAGE_DIR)"
