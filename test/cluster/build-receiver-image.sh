#!/usr/bin/env bash
# Build the project's ./cmd/receiver and ./cmd/sweeper as static binaries into
# one image, $RECEIVER_IMAGE, and import it into the running test cluster's
# containerd. The image has no shell or libc:
#   /usr/local/bin/receiver  the entrypoint
#   /usr/local/bin/sweeper   run it with command: [/usr/local/bin/sweeper]
#   /etc/passwd, /etc/group  root and nonroot (UID and GID 65532), the user
#                            the image runs as
# Runs on every call: the binaries change with every commit.
set -euo pipefail
. "$(dirname "$0")/env.sh"
require_root

NONROOT_UID=65532
COMMANDS=(receiver sweeper)
CONTAINERD_SOCKET=$RUN/containerd/containerd.sock

started=$(date +%s.%N)
cd "$REPO_ROOT"
for command in "${COMMANDS[@]}"; do
	if ! compgen -G "cmd/$command/*.go" >/dev/null; then
		echo "error: ./cmd/$command has no Go files yet, so $RECEIVER_IMAGE cannot be built;" \
			"add the command or skip this script" >&2
		exit 1
	fi
done
if [ ! -S "$CONTAINERD_SOCKET" ]; then
	echo "error: the test cluster is not running (no $CONTAINERD_SOCKET); run test/cluster/up.sh first" >&2
	exit 1
fi

WORK=$LAB/receiver-image
ROOT=$WORK/root
rm -rf "$WORK"
mkdir -p "$ROOT/usr/local/bin" "$ROOT/etc" "$ROOT/tmp"
chmod 1777 "$ROOT/tmp"

for command in "${COMMANDS[@]}"; do
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$ROOT/usr/local/bin/$command" "./cmd/$command"
done

cat >"$ROOT/etc/passwd" <<EOF
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:$NONROOT_UID:$NONROOT_UID:nonroot:/home/nonroot:/sbin/nologin
EOF
cat >"$ROOT/etc/group" <<EOF
root:x:0:
nonroot:x:$NONROOT_UID:
EOF
# Trusted CAs for any HTTPS the receiver makes beyond the API server, whose
# CA comes with the service account token.
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
	mkdir -p "$ROOT/etc/ssl/certs"
	cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/"
fi
tar --numeric-owner --owner=0 --group=0 -C "$ROOT" -cf "$WORK/rootfs.tar" .

if [ ! -x "$TOOLS_BIN/mkimage" ]; then
	(
		cd "$CLUSTER_DIR/tools/mkimage" &&
			GOMODCACHE=$LAB/gomod GOCACHE=$LAB/gocache-tools CGO_ENABLED=0 \
				go build -trimpath -o "$TOOLS_BIN/mkimage" .
	)
fi
"$TOOLS_BIN/mkimage" -rootfs "$WORK/rootfs.tar" -tag "$RECEIVER_IMAGE" \
	-entrypoint /usr/local/bin/receiver -user "$NONROOT_UID:$NONROOT_UID" -o "$WORK/receiver.tar"

ctr --address "$CONTAINERD_SOCKET" -n k8s.io images import "$WORK/receiver.tar" >/dev/null
echo "build-receiver-image: $RECEIVER_IMAGE imported in $(elapsed_since "$started")s"
