#!/usr/bin/env bash
# Install the Debian packages the test cluster needs. Does nothing when they
# are all present. The packaged containerd and etcd services are never left
# running: the cluster starts its own instances with their own state.
set -euo pipefail
. "$(dirname "$0")/env.sh"
require_root

# iptables comes in as a dependency of containernetworking-plugins. The
# kubelet runs without it (makeIPTablesUtilChains: false).
PACKAGES=(
	containerd runc containernetworking-plugins
	etcd-server
	debootstrap debian-archive-keyring gpgv
	iproute2 util-linux curl openssl bc
)
SERVICES=(containerd etcd)

missing=()
for package in "${PACKAGES[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q '^install ok installed$'; then
		missing+=("$package")
	fi
done
if [ ${#missing[@]} -eq 0 ]; then
	echo "install-deps: all ${#PACKAGES[@]} packages present"
	exit 0
fi

# When policy-rc.d exits with code 101, invoke-rc.d does not start the
# services that the packages install. Put one in place for this run unless the machine has one.
POLICY=/usr/sbin/policy-rc.d
created_policy=
if [ ! -e "$POLICY" ]; then
	printf '#!/bin/sh\nexit 101\n' >"$POLICY"
	chmod 755 "$POLICY"
	created_policy=1
fi
remove_policy() {
	if [ -n "$created_policy" ]; then
		rm -f "$POLICY"
	fi
}
trap remove_policy EXIT

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
	tail -n 30 "$log" >&2
	rm -f "$log"
	echo "error: apt-get failed to install ${missing[*]} (output above); check that the Debian mirror is reachable" >&2
	exit 1
fi
rm -f "$log"

# On a machine whose init is systemd the units may have started anyway
# (for example when policy-rc.d was ignored). Stop them by unit name.
if [ -d /run/systemd/system ]; then
	for unit in "${SERVICES[@]}"; do
		if systemctl is-active --quiet "$unit"; then
			systemctl disable --now "$unit" >/dev/null 2>&1
			echo "install-deps: stopped and disabled the packaged $unit service"
		fi
	done
fi
echo "install-deps: done"
