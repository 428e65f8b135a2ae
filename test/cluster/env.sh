# shellcheck shell=bash
# Settings shared by the scripts under test/cluster. Source it. It only
# defines variables and small helpers and starts nothing.
#
# Everything large lives under $LAB so that repeated runs reuse it:
#   $LAB/bin/<k8s version>-<go version>/  Kubernetes binaries (build-k8s.sh)
#   $LAB/images/<input hash>/             image tars (build-images.sh)
#   $LAB/containerd-root/                 containerd's store with the imported
#                                         images (up.sh); kept by down.sh --purge
#   $LAB/gomod, $LAB/gocache-*            Go caches of the nested build modules
#   $LAB/run/                             state of the running cluster (up.sh)

CLUSTER_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$CLUSTER_DIR/../.." && pwd)
export REPO_ROOT

export K8S_VERSION=${K8S_VERSION:-v1.34.4}
export LAB=${SCRIPTRUN_E2E_LAB:-/var/tmp/scriptrun-e2e}
export RUN=$LAB/run
export NETNS=scriptrun-e2e
export NETNS_PATH=/var/run/netns/$NETNS
export ADMIN_KUBECONFIG=$RUN/admin.kubeconfig
# kubectl's discovery and HTTP caches; by default they go to ~/.kube/cache.
export KUBECACHEDIR=$RUN/kubectl-cache
export CONTAINERD_ROOT=$LAB/containerd-root
export CONTAINERD_SOCKET=$RUN/containerd/containerd.sock

GO_VERSION=$(go env GOVERSION)
export K8S_BIN=$LAB/bin/$K8S_VERSION-$GO_VERSION
export KUBECTL=$K8S_BIN/kubectl
export TOOLS_BIN=$LAB/tools/$GO_VERSION

# Node identity. NODE_IP sits on the bridge inside the network namespace and
# lies outside POD_SUBNET, so pods have no route to it. Both ranges exist only
# inside $NETNS.
export NODE_NAME=scriptrun-e2e-node
export NODE_IP=10.89.0.1
export POD_SUBNET=10.88.0.0/16
export SERVICE_SUBNET=10.96.0.0/24
export APISERVER_PORT=6443

# Image references. The two runtime references must equal the defaults in the
# project's runtime table, because the kubelet resolves them locally
# (imagePullPolicy IfNotPresent, no registry on this machine).
export PAUSE_IMAGE=localhost/scriptrun/pause:e2e
export PYTHON_IMAGE=ghcr.io/scriptrun/runtime-python:0.1.0
export NODE_IMAGE=ghcr.io/scriptrun/runtime-node:0.1.0
export RECEIVER_IMAGE=localhost/scriptrun/receiver:e2e

# Print a hash of every input of build-images.sh: the script itself (which
# contains the Debian suite and the package lists) and the sources of the two
# tools it builds. A change to any of them selects a new image directory.
image_inputs_hash() {
	(
		cd "$CLUSTER_DIR" &&
			cat build-images.sh tools/mkimage/go.mod tools/mkimage/go.sum tools/mkimage/*.go \
				tools/pause/go.mod tools/pause/*.go
	) | sha256sum | cut -c1-16
}
IMAGE_DIR=$LAB/images/$(image_inputs_hash)
export IMAGE_DIR

# Run a command inside the cluster's network namespace. nsenter --net changes
# only the network namespace; `ip netns exec` would also remount /sys in a new
# mount namespace, which hides the cgroup mounts from the kubelet.
in_netns() {
	nsenter --net="$NETNS_PATH" "$@"
}

# Run kubectl as cluster admin inside the network namespace, where the API
# server listens.
kubectl_admin() {
	in_netns "$KUBECTL" --kubeconfig="$ADMIN_KUBECONFIG" "$@"
}

# Print seconds since the given start time (from `date +%s.%N`), one decimal.
elapsed_since() {
	echo "$(date +%s.%N) - $1" | bc | xargs printf '%.1f'
}

require_root() {
	if [ "$(id -u)" != 0 ]; then
		echo "error: $(basename "$0") must run as root (it manages mounts, network namespaces and cgroups)" >&2
		exit 1
	fi
}
