#!/usr/bin/env bash
# Create the cluster's certificate authority, the certificates of every
# component, the service account signing key and the kubeconfigs, in $RUN/pki
# and $RUN. Keeps files that exist and stay valid for another day, so a
# restart of the cluster keeps its identities. Called by up.sh.
set -euo pipefail
. "$(dirname "$0")/env.sh"

PKI=$RUN/pki
VALID_DAYS=365
mkdir -p "$PKI"
cd "$PKI"

# valid_for_a_day FILE: whether the certificate FILE exists and does not
# expire within 24 hours.
valid_for_a_day() {
	[ -f "$1" ] && openssl x509 -in "$1" -noout -checkend 86400 >/dev/null
}

new_key() {
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
}

if ! valid_for_a_day ca.crt; then
	# A new CA invalidates every certificate it signed.
	rm -f ./*.crt ./*.key ./*.srl
	new_key ca.key
	openssl req -x509 -new -key ca.key -out ca.crt -days "$VALID_DAYS" \
		-subj "/CN=scriptrun-e2e-ca" 2>/dev/null
fi

# issue NAME COMMON_NAME ORGANIZATION [SUBJECT_ALT_NAMES]
# Writes NAME.key and NAME.crt, signed by the CA, for both server and client
# use. Kubernetes takes the user name from CN and the groups from O.
issue() {
	local name=$1 common_name=$2 organization=$3 alt_names=${4:-}
	if valid_for_a_day "$name.crt"; then
		return 0
	fi
	local subject="/CN=$common_name"
	if [ -n "$organization" ]; then
		subject+="/O=$organization"
	fi
	new_key "$name.key"
	openssl req -new -key "$name.key" -out "$name.csr" -subj "$subject" 2>/dev/null
	{
		echo "basicConstraints = CA:FALSE"
		echo "keyUsage = critical, digitalSignature, keyEncipherment"
		echo "extendedKeyUsage = serverAuth, clientAuth"
		if [ -n "$alt_names" ]; then
			echo "subjectAltName = $alt_names"
		fi
	} >"$name.ext"
	openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
		-out "$name.crt" -days "$VALID_DAYS" -extfile "$name.ext" 2>/dev/null
	rm -f "$name.csr" "$name.ext"
}

# 10.96.0.1 is the first address of SERVICE_SUBNET, the ClusterIP of the
# kubernetes Service.
issue apiserver kube-apiserver "" \
	"DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:10.96.0.1,IP:$NODE_IP"
issue apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
issue admin scriptrun-e2e-admin system:masters
issue controller-manager system:kube-controller-manager ""
issue scheduler system:kube-scheduler ""
issue kubelet-client "system:node:$NODE_NAME" system:nodes
issue kubelet-serving "system:node:$NODE_NAME" system:nodes "DNS:$NODE_NAME,IP:$NODE_IP,IP:127.0.0.1"

if [ ! -f sa.key ]; then
	new_key sa.key
	openssl pkey -in sa.key -pubout -out sa.pub 2>/dev/null
fi

# write_kubeconfig FILE CERTIFICATE_NAME
write_kubeconfig() {
	cat >"$RUN/$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: scriptrun-e2e
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority: $PKI/ca.crt
users:
- name: $2
  user:
    client-certificate: $PKI/$2.crt
    client-key: $PKI/$2.key
contexts:
- name: scriptrun-e2e
  context:
    cluster: scriptrun-e2e
    user: $2
current-context: scriptrun-e2e
EOF
	chmod 600 "$RUN/$1"
}
write_kubeconfig admin.kubeconfig admin
write_kubeconfig controller-manager.kubeconfig controller-manager
write_kubeconfig scheduler.kubeconfig scheduler
write_kubeconfig kubelet.kubeconfig kubelet-client
