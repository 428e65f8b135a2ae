#!/usr/bin/env bash
# Stop the test cluster that up.sh started and remove what it made outside
# $RUN: pods (deleted through the API first, so the kubelet tears down their
# sandboxes), processes (by the PIDs in $RUN/pids, each the leader of its own
# process group), leftover container processes and cgroups, mounts under
# $LAB, the network namespace with its bridge, and CNI result files.
#
# Usage: down.sh [--purge]
#   --purge  also delete $RUN (etcd data, certificates, kubelet state, logs).
#            The caches in $LAB stay: binaries, image tars and containerd's
#            image store ($CONTAINERD_ROOT), which down.sh empties of
#            containers.
set -uo pipefail
. "$(dirname "$0")/env.sh"
require_root

PURGE=
case "${1:-}" in
--purge) PURGE=1 ;;
"") ;;
*)
	echo "usage: $0 [--purge]" >&2
	exit 2
	;;
esac

CGROUP_ROOT=/scriptrun-e2e
STARTED=$(date +%s.%N)

say() {
	printf 'down: %6ss  %s\n' "$(elapsed_since "$STARTED")" "$*"
}

# recorded_pid NAME: print the recorded PID of component NAME if that process
# still runs the expected program and leads its own process group, which
# guards against a PID that the kernel has since given to another process.
recorded_pid() {
	local name=$1 file=$RUN/pids/$1.pid pid
	[ -f "$file" ] || return 1
	pid=$(cat "$file")
	[ -r "/proc/$pid/cmdline" ] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$name" || return 1
	[ "$(ps -o pgid= -p "$pid" | tr -d ' ')" = "$pid" ] || return 1
	echo "$pid"
}

# stop NAME...: SIGTERM the process group of each component NAME, wait up to
# 10 s for all of them, then SIGKILL the groups still running.
stop() {
	local name pid pids=() names=()
	for name in "$@"; do
		if pid=$(recorded_pid "$name"); then
			kill -TERM -- "-$pid" 2>/dev/null
			pids+=("$pid")
			names+=("$name")
		fi
		rm -f "$RUN/pids/$name.pid"
	done
	[ ${#pids[@]} -gt 0 ] || return 0
	for _ in $(seq 50); do
		kill -0 "${pids[@]}" 2>/dev/null || break
		sleep 0.2
	done
	for pid in "${pids[@]}"; do
		kill -KILL -- "-$pid" 2>/dev/null
	done
	say "stopped ${names[*]} (process groups ${pids[*]})"
}

ctr_k8s() {
	timeout 20 ctr --address "$CONTAINERD_SOCKET" -n k8s.io "$@"
}

# Deleting pods through the API lets the kubelet stop each sandbox, which
# releases its IP address and network namespace through CNI.
delete_pods() {
	recorded_pid kube-apiserver >/dev/null && recorded_pid kubelet >/dev/null || return 0
	kubectl_admin delete jobs --all --all-namespaces --wait=false --request-timeout=10s >/dev/null 2>&1
	kubectl_admin delete pods --all --all-namespaces --grace-period=0 --force \
		--wait=false --request-timeout=10s >/dev/null 2>&1
	for _ in $(seq 60); do
		if [ -z "$(ctr_k8s tasks list -q 2>/dev/null)" ]; then
			say "pods deleted through the API"
			return 0
		fi
		sleep 0.5
	done
	say "pods still running after 30 s; killing them through containerd"
}

# Kill and delete every task and container still in our containerd.
remove_containers() {
	recorded_pid containerd >/dev/null || return 0
	local task container
	for task in $(ctr_k8s tasks list -q 2>/dev/null); do
		ctr_k8s tasks kill --signal SIGKILL "$task" >/dev/null 2>&1
	done
	for task in $(ctr_k8s tasks list -q 2>/dev/null); do
		ctr_k8s tasks delete --force "$task" >/dev/null 2>&1
	done
	for container in $(ctr_k8s containers list -q 2>/dev/null); do
		ctr_k8s containers delete "$container" >/dev/null 2>&1
	done
}

# Shims detach from containerd's process group, so stopping containerd leaves
# them. Only shims started with our socket address are killed.
kill_shims() {
	local pid
	for pid in $(pgrep -f -- "containerd-shim-runc-v2 .*-address $CONTAINERD_SOCKET"); do
		kill -KILL "$pid" 2>/dev/null && say "killed containerd shim $pid"
	done
}

# cgroup_dirs: print every directory under CGROUP_ROOT in every hierarchy,
# deepest first.
cgroup_dirs() {
	local hierarchy
	for hierarchy in $(awk '$3 == "cgroup" || $3 == "cgroup2" { print $2 }' /proc/self/mounts); do
		if [ -d "$hierarchy$CGROUP_ROOT" ]; then
			find "$hierarchy$CGROUP_ROOT" -type d
		fi
	done | awk '{ print length($0) " " $0 }' | sort -rn | cut -d' ' -f2-
}

# Every process in CGROUP_ROOT is a container process of this cluster. Kill
# any that survived, then remove the cgroups (rmdir works only on empty ones).
remove_cgroups() {
	local dir pid killed=0 removed=0
	for dir in $(cgroup_dirs); do
		for pid in $(cat "$dir/cgroup.procs" 2>/dev/null); do
			kill -KILL "$pid" 2>/dev/null && killed=$((killed + 1))
		done
	done
	if [ "$killed" -gt 0 ]; then
		say "killed $killed leftover container processes"
		sleep 0.5
	fi
	for dir in $(cgroup_dirs); do
		rmdir "$dir" 2>/dev/null && removed=$((removed + 1))
	done
	if [ "$removed" -gt 0 ]; then
		say "removed $removed cgroups under $CGROUP_ROOT"
	fi
}

# Unmount everything below $LAB, deepest first. The kubelet makes its root
# directory a shared bind mount and mounts volumes below it. containerd
# mounts overlay root filesystems and pod network namespaces.
unmount_all() {
	local mount_point count=0
	for mount_point in $(awk -v lab="$LAB" 'index($2, lab "/") == 1 { print $2 }' /proc/self/mounts |
		awk '{ print length($0) " " $0 }' | sort -rn | cut -d' ' -f2-); do
		umount -l "$mount_point" 2>/dev/null && count=$((count + 1))
	done
	if [ "$count" -gt 0 ]; then
		say "unmounted $count mounts under $LAB"
	fi
}

# iptables_remove_kube_chains: flush and delete every KUBE-* chain in the
# current network namespace, after removing the rules that jump to them.
iptables_remove_kube_chains() {
	local iptables table chain
	for iptables in iptables ip6tables; do
		command -v "$iptables" >/dev/null || continue
		for table in filter nat mangle; do
			for chain in $("$iptables" -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ { print $2 }'); do
				"$iptables" -t "$table" -S 2>/dev/null | grep -- "-j $chain\$" | sed 's/^-A/-D/' |
					while read -r rule; do
						eval "$iptables -t $table $rule" 2>/dev/null
					done
				"$iptables" -t "$table" -F "$chain" 2>/dev/null
				"$iptables" -t "$table" -X "$chain" 2>/dev/null && echo "removed $iptables $table/$chain"
			done
		done
	done
}

remove_network() {
	if [ -e "$NETNS_PATH" ]; then
		in_netns bash -c "$(declare -f iptables_remove_kube_chains); iptables_remove_kube_chains"
		in_netns ip link delete cni0 2>/dev/null
		ip netns delete "$NETNS" && say "removed network namespace $NETNS with its bridge"
	fi
	# Pod network namespaces are not in /var/run/netns: containerd keeps them
	# under $RUN (netns_mounts_under_state_dir), and unmount_all removed them.
	# A cni-* entry there belongs to some other containerd on this machine.
	# ip netns add creates /var/run/netns and bind-mounts it onto itself.
	# Undo both only when no network namespace is left in it.
	if [ -d /var/run/netns ] && [ -z "$(ls -A /var/run/netns)" ]; then
		umount /var/run/netns 2>/dev/null
		rmdir /var/run/netns 2>/dev/null
	fi
}

# containerd 1.6 puts shim sockets in /run/containerd/s regardless of its
# configuration. Remove the directories if they are empty, as the shims leave them.
remove_runtime_dirs() {
	rmdir /run/containerd/s /run/containerd 2>/dev/null
}

# libcni caches each pod's CNI result in /var/lib/cni/results, named after
# the network in the conflist.
remove_cni_cache() {
	rm -f /var/lib/cni/results/scriptrun-e2e-* 2>/dev/null
	rmdir /var/lib/cni/results /var/lib/cni 2>/dev/null
	rm -rf "$RUN/cni/networks"
}

report_leftovers() {
	local left=
	if pgrep -f -- "$LAB/" >/dev/null; then
		left+=" processes:$(pgrep -f -- "$LAB/" | tr '\n' ' ')"
	fi
	if awk -v lab="$LAB" 'index($2, lab "/") == 1' /proc/self/mounts | grep -q .; then
		left+=" mounts under $LAB"
	fi
	if [ -e "$NETNS_PATH" ]; then
		left+=" network namespace $NETNS"
	fi
	if [ -n "$left" ]; then
		echo "down: warning: still present:$left" >&2
		return 1
	fi
}

delete_pods
stop kubelet kube-scheduler kube-controller-manager
remove_containers
stop containerd
kill_shims
remove_cgroups
stop kube-apiserver etcd
unmount_all
remove_runtime_dirs
remove_network
remove_cni_cache

status=0
if ! report_leftovers; then
	status=1
fi
if [ -n "$PURGE" ]; then
	# --one-file-system: should an unmount above have failed, rm stops at
	# the mount point instead of deleting what is mounted there.
	rm -rf --one-file-system "$RUN"
	say "deleted $RUN"
fi
say "done"
exit "$status"
