#!/usr/bin/env bash
# Run the end-to-end suite (./test/e2e, build tag e2e) against the project's
# own single-node cluster. The steps: install packages, build or reuse the
# Kubernetes binaries and images, start or reuse the cluster, build the
# receiver image, and run go test inside the cluster's network namespace.
# The cluster is torn down at the end. Exits with go test's status.
#
# Environment:
#   KEEP_CLUSTER=1   leave the cluster running afterwards (down.sh stops it)
#   E2E_RUN=REGEXP   passed to go test -run
#   E2E_BENCH=REGEXP passed to go test -bench, with -benchtime $E2E_BENCHTIME
#                    (default 5x)
set -uo pipefail
. "$(dirname "$0")/env.sh"
require_root

LOGS=$LAB/logs
mkdir -p "$LOGS"
STARTED=$(date +%s.%N)
TIMINGS=()

# timed LABEL COMMAND...: run COMMAND and record how long it took.
timed() {
	local label=$1 step status
	shift
	step=$(date +%s.%N)
	"$@"
	status=$?
	TIMINGS+=("$(printf '%-38s %7ss' "$label" "$(elapsed_since "$step")")")
	return "$status"
}

print_timings() {
	echo "e2e: step timings"
	printf '  %s\n' "${TIMINGS[@]}"
	printf '  %-38s %7ss\n' "total" "$(elapsed_since "$STARTED")"
}

fail() {
	echo "e2e: error: $*" >&2
	exit 1
}

# build_in_parallel: run build-k8s.sh and build-images.sh at the same time,
# each logging to a file, and show a log's end when its build fails.
build_in_parallel() {
	"$CLUSTER_DIR/build-k8s.sh" >"$LOGS/build-k8s.log" 2>&1 &
	local k8s_pid=$!
	"$CLUSTER_DIR/build-images.sh" >"$LOGS/build-images.log" 2>&1 &
	local images_pid=$!

	local failed=
	wait "$k8s_pid" || failed+=" build-k8s"
	wait "$images_pid" || failed+=" build-images"
	grep -h -E '^build-(k8s|images): (cached|done|go build|go mod tidy|downloaded|.* in [0-9.]+s)' \
		"$LOGS/build-k8s.log" "$LOGS/build-images.log" | sed 's/^/  /'
	for name in $failed; do
		echo "e2e: $name failed; last lines of $LOGS/$name.log:" >&2
		tail -n 40 "$LOGS/$name.log" >&2
	done
	[ -z "$failed" ]
}

receiver_sources_exist() {
	compgen -G "$REPO_ROOT/cmd/receiver/*.go" >/dev/null
}

# Compile the tests outside the network namespace, where the Go module proxy
# is reachable. -exec /bin/true skips running them. go test inside the
# namespace then finds every module and package in the caches.
compile_tests() {
	cd "$REPO_ROOT" && go test -tags e2e -count=1 -exec /bin/true ./test/e2e/...
}

# start_background NAME COMMAND...: run COMMAND in the background with its
# output in $LOGS/NAME.log; finish_background NAME collects it.
declare -A BACKGROUND_PIDS BACKGROUND_STARTS
start_background() {
	local name=$1
	shift
	BACKGROUND_STARTS[$name]=$(date +%s.%N)
	rm -f "$LOGS/$name.end"
	{
		"$@"
		local status=$?
		date +%s.%N >"$LOGS/$name.end"
		exit "$status"
	} >"$LOGS/$name.log" 2>&1 &
	BACKGROUND_PIDS[$name]=$!
}

# finish_background NAME: wait for NAME, record how long it ran, and show its
# log's end if it failed.
finish_background() {
	local name=$1 status seconds
	wait "${BACKGROUND_PIDS[$name]}"
	status=$?
	seconds=$(echo "$(cat "$LOGS/$name.end") - ${BACKGROUND_STARTS[$name]}" | bc)
	TIMINGS+=("$(printf '%-38s %7.1fs' "$name (in background)" "$seconds")")
	if [ "$status" -ne 0 ]; then
		echo "e2e: $name failed; last lines of $LOGS/$name.log:" >&2
		tail -n 40 "$LOGS/$name.log" >&2
	fi
	return "$status"
}

teardown() {
	local status=$?
	# Background steps still running when a step failed.
	for pid in "${BACKGROUND_PIDS[@]}"; do
		kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	done
	if [ "${KEEP_CLUSTER:-}" = 1 ]; then
		echo "e2e: KEEP_CLUSTER=1: the cluster keeps running; stop it with test/cluster/down.sh"
	else
		timed "down (--purge)" "$CLUSTER_DIR/down.sh" --purge >"$LOGS/down.log" 2>&1 ||
			{
				echo "e2e: warning: down.sh reported leftovers:" >&2
				tail -n 20 "$LOGS/down.log" >&2
			}
	fi
	print_timings
	if [ -n "${SUMMARY:-}" ]; then
		echo "$SUMMARY"
	fi
	exit "$status"
}

timed "install-deps" "$CLUSTER_DIR/install-deps.sh" || fail "installing packages failed"
timed "build-k8s + build-images" build_in_parallel || fail "building the cluster's binaries or images failed"

trap teardown EXIT
trap 'exit 130' INT TERM

# The tests and the receiver image compile while the cluster starts, because
# up.sh spends most of its time waiting on the components.
start_background "compile e2e tests" compile_tests
receiver_image=
if receiver_sources_exist; then
	receiver_image=$RECEIVER_IMAGE
	start_background "build receiver image" "$CLUSTER_DIR/build-receiver-image.sh" --no-import
else
	echo "e2e: ./cmd/receiver has no Go files yet; skipping $RECEIVER_IMAGE"
fi

timed "up" "$CLUSTER_DIR/up.sh" || fail "starting the cluster failed; logs in $RUN/logs"
finish_background "compile e2e tests" ||
	fail "the e2e tests do not compile (go test -tags e2e ./test/e2e/...)"
if [ -n "$receiver_image" ]; then
	finish_background "build receiver image" || fail "building $RECEIVER_IMAGE failed"
	timed "import receiver image" "$CLUSTER_DIR/build-receiver-image.sh" --import-only ||
		fail "importing $RECEIVER_IMAGE failed"
fi

# Knative Serving's CRDs, which test/e2e/deploy_test.go installs to validate
# the receiver's Knative Service. The download needs the Go module proxy, so
# it runs here, outside the network namespace, and from / so that go.mod stays
# unchanged. The tests that need the CRDs fail when the download failed.
SERVING_MODULE=knative.dev/serving@v0.51.0
serving_dir=$(cd / && go mod download -json "$SERVING_MODULE" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
serving_crds=${serving_dir:+$serving_dir/config/core/300-resources}
[ -n "$serving_crds" ] || echo "e2e: warning: downloading $SERVING_MODULE failed, so the tests in deploy_test.go that install its CRDs fail" >&2

echo "e2e: go test -tags e2e ./test/e2e/... in network namespace $NETNS"
run_tests() {
	cd "$REPO_ROOT" &&
		nsenter --net="$NETNS_PATH" env \
			SCRIPTRUN_E2E_KUBECONFIG="$ADMIN_KUBECONFIG" \
			SCRIPTRUN_E2E_KUBECTL="$KUBECTL" \
			SCRIPTRUN_E2E_RECEIVER_IMAGE="$receiver_image" \
			SCRIPTRUN_E2E_PYTHON_IMAGE="$PYTHON_IMAGE" \
			SCRIPTRUN_E2E_NODE_IMAGE="$NODE_IMAGE" \
			SCRIPTRUN_E2E_NODE_NAME="$NODE_NAME" \
			SCRIPTRUN_E2E_SERVING_CRDS="$serving_crds" \
			GOPROXY=off GOTOOLCHAIN=local \
			go test -tags e2e -v -count=1 -timeout 30m ${E2E_RUN:+-run "$E2E_RUN"} \
			${E2E_BENCH:+-bench "$E2E_BENCH" -benchtime "${E2E_BENCHTIME:-5x}"} ./test/e2e/... 2>&1 |
		tee "$LOGS/go-test.log"
	return "${PIPESTATUS[0]}"
}
timed "go test" run_tests
test_status=$?

passed=$(grep -a -c -E '^\s*--- PASS: ' "$LOGS/go-test.log")
failed=$(grep -a -c -E '^\s*--- FAIL: ' "$LOGS/go-test.log")
skipped=$(grep -a -c -E '^\s*--- SKIP: ' "$LOGS/go-test.log")
# Counts include subtests. The last line has the plain "N passed, N failed"
# form that CI reads.
SUMMARY="e2e: go test summary (exit status $test_status):
$(grep -a -E '^(ok|FAIL|---|panic:)' "$LOGS/go-test.log")
e2e: $passed passed, $failed failed, $skipped skipped"
exit "$test_status"
