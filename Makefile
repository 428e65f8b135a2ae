# scriptrun's developer entry points. Run `make help` for the list.

GO ?= go
PORT ?= 8080

.PHONY: help run test e2e e2e-bench cluster-up cluster-down images

help: ## List the targets.
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

run: ## Serve the receiver on :$(PORT) with the local runner.
	env -u KUBECONFIG SCRIPTRUN_RUNNER=local PORT=$(PORT) $(GO) run ./cmd/receiver

test: ## Run the unit and loopback tests.
	bash test/unit.sh

e2e: ## Run the end-to-end suite on the project's own single-node cluster.
	bash test/cluster/e2e.sh

e2e-bench: ## Measure run latency through scriptrun against a direct Job on the test cluster.
	E2E_RUN='^$$' E2E_BENCH=BenchmarkTrivialPythonRun bash test/cluster/e2e.sh

images: ## Build the runtime and receiver images (needs docker or podman).
	bash images/build.sh

cluster-up: ## Start (or reuse) the test cluster.
	bash test/cluster/up.sh

cluster-down: ## Stop the test cluster and remove everything it made.
	bash test/cluster/down.sh
