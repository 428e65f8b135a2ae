#!/usr/bin/env bash
# Start the single-node test cluster inside the network namespace $NETNS:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd
# and kubelet, with a bridge CNI network. Reuses a healthy running cluster.
# Returns once the node is Ready and the default namespace has its service
# account and kube-root-ca.crt ConfigMap, which every pod needs.
#
# State lives in $RUN: pids/ (one file per process group), logs/, pki/,
# etcd/, containerd/, kubelet/. down.sh stops what this script starts.
#
# Needs the binaries from build-k8s.sh and the images from build-images.sh.
set -euo pipefail
. "$(dirname "$0")/env.sh"
require_root

# The kubelet limits every pod to this many processes and threads (pids
# cgroup), so a fork bomb in a user script ends with EAGAIN in that pod
# instead of exhausting the node's PIDs. The margin is for the runtimes'
# threads and for scripts that start a few subprocesses.
POD_PIDS_LIMIT=256

# Pods' cgroups go under this cgroup, not under the top level, so down.sh can
# find and remove all of them.
CGROUP_ROOT=/scriptrun-e2e

STARTED=$(date +%s.%N)
step() {
	printf 'up: %6ss  %s\n' "$(elapsed_since "$STARTED")" "$*"
}

fail() {
	echo "up: error: $*" >&2
	exit 1
}

# wait_for DESCRIPTION TIMEOUT_SECONDS LOG COMMAND...: run COMMAND every 0.25 s
# until it succeeds. Fail with the end of LOG on timeout. Fail at once, with
# the end of its own log, when a started component has exited.
wait_for() {
	local description=$1 timeout=$2 log=$3
	shift 3
	local deadline=$(($(date +%s) + timeout)) pid_file name
	until "$@" >/dev/null 2>&1; do
		for pid_file in "$RUN"/pids/*.pid; do
			name=$(basename "$pid_file" .pid)
			if ! is_running "$name"; then
				echo "up: $name exited while waiting for $description; last lines of $RUN/logs/$name.log:" >&2
				tail -n 25 "$RUN/logs/$name.log" >&2 || true
				exit 1
			fi
		done
		if [ "$(date +%s)" -ge "$deadline" ]; then
			echo "up: timed out after ${timeout}s waiting for $description; last lines of $log:" >&2
			tail -n 25 "$log" >&2 || true
			exit 1
		fi
		sleep 0.25
	done
}

# start NAME COMMAND...: start COMMAND inside the network namespace as the
# leader of a new session (its own process group) and record its PID.
# nsenter and setsid each exec the next program, so $! is COMMAND's PID. A
# shell function in their place would put a subshell's PID in the file.
start() {
	local name=$1
	shift
	nsenter --net="$NETNS_PATH" setsid "$@" >"$RUN/logs/$name.log" 2>&1 </dev/null &
	echo $! >"$RUN/pids/$name.pid"
}

is_running() {
	[ -f "$RUN/pids/$1.pid" ] && kill -0 "$(cat "$RUN/pids/$1.pid")" 2>/dev/null
}

COMPONENTS=(etcd containerd kube-apiserver kube-controller-manager kube-scheduler kubelet)

# node_is_ready SINCE: whether the node's Ready condition is True and the
# kubelet reported it at or after SINCE (seconds since the epoch). A restarted
# cluster keeps the node object in etcd, Ready from its last run, until the
# new kubelet reports.
node_is_ready() {
	local since=$1 ready
	ready=$(kubectl_admin get node "$NODE_NAME" \
		-o jsonpath='{range .status.conditions[?(@.type=="Ready")]}{.status} {.lastHeartbeatTime}{end}') || return 1
	[ "${ready%% *}" = True ] && [ "$(date -d "${ready#* }" +%s)" -ge "$since" ]
}

default_namespace_is_ready() {
	kubectl_admin -n default get serviceaccount default &&
		kubectl_admin -n default get configmap kube-root-ca.crt
}

cluster_is_healthy() {
	[ -e "$NETNS_PATH" ] || return 1
	for component in "${COMPONENTS[@]}"; do
		is_running "$component" || return 1
	done
	# The kubelet reports every nodeStatusUpdateFrequency (5s).
	kubectl_admin get --raw /readyz >/dev/null 2>&1 && node_is_ready $(($(date +%s) - 30)) 2>/dev/null
}

check_inputs() {
	local missing=
	for binary in kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl; do
		[ -x "$K8S_BIN/$binary" ] || missing+=" $K8S_BIN/$binary"
	done
	for image in pause runtime-python runtime-node; do
		[ -f "$IMAGE_DIR/$image.tar" ] || missing+=" $IMAGE_DIR/$image.tar"
	done
	if [ -n "$missing" ]; then
		fail "missing:$missing; run test/cluster/build-k8s.sh and test/cluster/build-images.sh first"
	fi
}

create_netns() {
	if [ ! -e "$NETNS_PATH" ]; then
		ip netns add "$NETNS"
	fi
	in_netns ip link set lo up
}

# The bridge carries only pod traffic. NODE_IP is a /32 outside POD_SUBNET,
# and the CNI config below gives pods no gateway and no routes, so a pod
# reaches other pods and nothing else, not even the node's own addresses.
# The kubelet needs a node IP that is not loopback; this is it.
create_pod_network() {
	if ! in_netns ip link show cni0 >/dev/null 2>&1; then
		in_netns ip link add cni0 type bridge
		in_netns ip addr add "$NODE_IP/32" dev cni0
	fi
	in_netns ip link set cni0 up

	mkdir -p "$RUN/cni/net.d" "$RUN/cni/networks"
	cat >"$RUN/cni/net.d/10-scriptrun-e2e.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "scriptrun-e2e",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": false,
      "ipMasq": false,
      "hairpinMode": false,
      "ipam": {
        "type": "host-local",
        "dataDir": "$RUN/cni/networks",
        "ranges": [[{"subnet": "$POD_SUBNET", "rangeStart": "10.88.1.0", "rangeEnd": "10.88.255.254"}]],
        "routes": []
      }
    },
    {"type": "loopback"}
  ]
}
EOF
}

# Create CGROUP_ROOT in every cgroup v1 hierarchy (the kubelet requires it to
# exist), or once in the cgroup v2 tree.
# NOTE: only the cgroup v1 path has run here (Debian 12 on cgroup v1).
create_cgroup_root() {
	if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
		mkdir -p "/sys/fs/cgroup$CGROUP_ROOT"
		return
	fi
	local hierarchy
	for hierarchy in $(awk '$3 == "cgroup" { print $2 }' /proc/self/mounts); do
		mkdir -p "$hierarchy$CGROUP_ROOT"
		# A new v1 cpuset cgroup starts with no CPUs and no memory nodes, and
		# no process can join it or its children until they are set.
		if [ -f "$hierarchy/cpuset.cpus" ] && [ -z "$(cat "$hierarchy$CGROUP_ROOT/cpuset.cpus")" ]; then
			cat "$hierarchy/cpuset.cpus" >"$hierarchy$CGROUP_ROOT/cpuset.cpus"
			cat "$hierarchy/cpuset.mems" >"$hierarchy$CGROUP_ROOT/cpuset.mems"
		fi
	done
}

start_etcd() {
	start etcd etcd --name scriptrun-e2e --data-dir "$RUN/etcd" \
		--listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
		--listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
		--initial-cluster scriptrun-e2e=http://127.0.0.1:2380 \
		--quota-backend-bytes 1073741824 --log-level warn
}

start_containerd() {
	mkdir -p "$RUN/containerd"
	cat >"$RUN/containerd/config.toml" <<EOF
version = 2
# The root contains the imported images and outlives $RUN, so that a restart
# after down.sh --purge skips the import.
root = "$CONTAINERD_ROOT"
state = "$RUN/containerd/state"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = "$CONTAINERD_SOCKET"

[plugins."io.containerd.internal.v1.opt"]
  path = "$RUN/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # Pod network namespaces under the state directory, not in /var/run/netns.
  netns_mounts_under_state_dir = true
  # Clamp oom_score_adj to containerd's own value. Without it, every sandbox
  # fails with "can't get final child's PID from pipe: EOF" on machines where
  # root lacks CAP_SYS_RESOURCE, because the kubelet sets -998 for the pause
  # container and only that capability may lower the score.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$RUN/containerd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$RUN/cni/net.d"
EOF
	start containerd containerd --config "$RUN/containerd/config.toml"
}

ctr_k8s() {
	ctr --address "$CONTAINERD_SOCKET" -n k8s.io "$@"
}

# Import the image tars unless this containerd already contains the same set.
import_images() {
	local marker=$CONTAINERD_ROOT/imported-images
	if [ "$(cat "$marker" 2>/dev/null)" = "$IMAGE_DIR" ]; then
		step "images already imported"
		return
	fi
	local pids=() image
	for image in pause runtime-python runtime-node; do
		ctr_k8s images import "$IMAGE_DIR/$image.tar" >"$RUN/logs/import-$image.log" 2>&1 &
		pids+=($!)
	done
	for pid in "${pids[@]}"; do
		wait "$pid" || fail "ctr images import failed; see $RUN/logs/import-*.log"
	done
	echo "$IMAGE_DIR" >"$marker"
	step "images imported: $PAUSE_IMAGE $PYTHON_IMAGE $NODE_IMAGE"
}

start_apiserver() {
	local pki=$RUN/pki
	# --enable-admission-plugins adds to the default set. PodSecurity,
	# ResourceQuota and LimitRanger are defaults; naming them keeps them on if
	# the defaults change. --endpoint-reconciler-type=none because no
	# kube-proxy runs, so no client could use the kubernetes Service's
	# endpoints.
	start kube-apiserver "$K8S_BIN/kube-apiserver" \
		--etcd-servers=http://127.0.0.1:2379 \
		--bind-address=127.0.0.1 --secure-port="$APISERVER_PORT" --advertise-address="$NODE_IP" \
		--tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
		--client-ca-file="$pki/ca.crt" \
		--service-account-issuer=https://kubernetes.default.svc \
		--service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
		--service-cluster-ip-range="$SERVICE_SUBNET" \
		--authorization-mode=Node,RBAC \
		--enable-admission-plugins=NodeRestriction,PodSecurity,ResourceQuota,LimitRanger \
		--kubelet-client-certificate="$pki/apiserver-kubelet-client.crt" \
		--kubelet-client-key="$pki/apiserver-kubelet-client.key" \
		--kubelet-certificate-authority="$pki/ca.crt" \
		--kubelet-preferred-address-types=InternalIP \
		--endpoint-reconciler-type=none \
		--cert-dir="$RUN/pki/apiserver-generated"
}

start_controllers() {
	local pki=$RUN/pki kubeconfig=$RUN/controller-manager.kubeconfig
	start kube-controller-manager "$K8S_BIN/kube-controller-manager" \
		--kubeconfig="$kubeconfig" \
		--authentication-kubeconfig="$kubeconfig" --authorization-kubeconfig="$kubeconfig" \
		--service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
		--use-service-account-credentials=true --leader-elect=false \
		--bind-address=127.0.0.1 --cert-dir="$RUN/pki/controller-manager-generated"

	kubeconfig=$RUN/scheduler.kubeconfig
	start kube-scheduler "$K8S_BIN/kube-scheduler" \
		--kubeconfig="$kubeconfig" \
		--authentication-kubeconfig="$kubeconfig" --authorization-kubeconfig="$kubeconfig" \
		--leader-elect=false --bind-address=127.0.0.1 --cert-dir="$RUN/pki/scheduler-generated"
}

start_kubelet() {
	local pki=$RUN/pki
	mkdir -p "$RUN/kubelet" "$RUN/pod-logs"
	# Pod start and completion do not wait for syncFrequency: the kubelet
	# reacts to API watch events and to runtime state changes (PLEG relists
	# every second). syncFrequency only bounds how late a changed ConfigMap
	# reaches a running pod's volume, so it is shortened too.
	cat >"$RUN/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$pki/ca.crt"}
authorization: {mode: Webhook}
tlsCertFile: $pki/kubelet-serving.crt
tlsPrivateKeyFile: $pki/kubelet-serving.key
containerRuntimeEndpoint: unix://$CONTAINERD_SOCKET
# containerd 1.6 does not report its cgroup driver over CRI, so the kubelet
# uses this one. It must match SystemdCgroup = false in containerd.
cgroupDriver: cgroupfs
cgroupRoot: $CGROUP_ROOT
# Allow cgroup v1 hosts. This is the 1.34 default, set here so that a newer
# K8S_VERSION does not depend on its own default.
failCgroupV1: false
failSwapOn: false
# Without this the kubelet adds KUBE-FIREWALL and canary chains to iptables.
makeIPTablesUtilChains: false
podPidsLimit: $POD_PIDS_LIMIT
podLogsDir: $RUN/pod-logs
volumePluginDir: $RUN/kubelet/volume-plugins
resolvConf: /etc/resolv.conf
serializeImagePulls: false
# The images exist only in containerd's store: never garbage-collect them.
imageGCHighThresholdPercent: 100
evictionHard: {memory.available: "200Mi", nodefs.available: "1%", imagefs.available: "1%"}
syncFrequency: 10s
nodeStatusUpdateFrequency: 5s
EOF
	start kubelet "$K8S_BIN/kubelet" \
		--config="$RUN/kubelet/config.yaml" --kubeconfig="$RUN/kubelet.kubeconfig" \
		--root-dir="$RUN/kubelet" --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" -v=1
}

main() {
	check_inputs

	if cluster_is_healthy; then
		step "reusing the running cluster"
	else
		if [ -d "$RUN/pids" ] && [ -n "$(ls -A "$RUN/pids")" ]; then
			echo "up: a previous cluster is partly running; stopping it first"
			"$CLUSTER_DIR/down.sh"
		fi
		mkdir -p "$RUN/pids" "$RUN/logs"

		create_netns
		"$CLUSTER_DIR/pki.sh"
		create_pod_network
		create_cgroup_root
		step "network namespace $NETNS, certificates and bridge ready"

		start_etcd
		start_containerd
		wait_for "the containerd socket" 30 "$RUN/logs/containerd.log" \
			test -S "$CONTAINERD_SOCKET"
		step "containerd started"
		import_images

		wait_for "etcd" 30 "$RUN/logs/etcd.log" in_netns curl -sf http://127.0.0.1:2379/health
		step "etcd healthy"
		# The kubelet retries until the API server responds, so it starts
		# alongside. The controller manager and the scheduler exit instead
		# when the API server has not yet created its RBAC roles.
		start_apiserver
		start_kubelet
		wait_for "kube-apiserver /readyz" 60 "$RUN/logs/kube-apiserver.log" \
			kubectl_admin get --raw /readyz
		step "kube-apiserver ready"
		start_controllers
		wait_for "node $NODE_NAME Ready" 90 "$RUN/logs/kubelet.log" node_is_ready "${STARTED%.*}"
		step "node $NODE_NAME Ready"
	fi

	wait_for "the default service account and kube-root-ca.crt" 60 \
		"$RUN/logs/kube-controller-manager.log" default_namespace_is_ready
	step "default service account and kube-root-ca.crt present"
	echo "up: cluster ready; kubeconfig $ADMIN_KUBECONFIG, kubectl $KUBECTL, network namespace $NETNS"
}

main "$@"
