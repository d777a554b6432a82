# A throwaway single-node Kubernetes 1.20 on this machine, made only from Debian packages
# (scripts/mlopskit/cluster/): the server binaries are built once from bookworm's `kubernetes`
# source package into /var/cache/mlops-kit/cluster/<inputs hash>/ (about 12 min on 2 cores;
# every later `make cluster`, from any clone, reuses them). Pods run `make images` output through
# dockershim on the local Docker engine: no registry. PROFILE=openshift adds a restricted-v2-like
# PodSecurityPolicy, the Route/Ingress APIs as CRDs and a project admin (no cluster rights).
# The kubeconfig is build/cluster/kubeconfig; deploy/cluster/ is an environment targeting it.
PROFILE ?= kubernetes

.PHONY: cluster
cluster: $(VENV_STAMP) $(HELM_STAMP) ## Start (or find) the throwaway cluster; PROFILE=openshift for the OpenShift-like one
	$(MLOPSKIT) cluster up --profile $(PROFILE)

# `make test` starts this before the image tests: when the binaries are not cached yet, their
# 10-minute Go build runs in the background at the lowest CPU priority, in the idle time of the
# image and end-to-end tests; `make cluster` later waits for it through the build lock.
.PHONY: cluster-prebuild
cluster-prebuild: $(VENV_STAMP)
	@mkdir -p build
	@setsid nice -n 19 $(MLOPSKIT) cluster build >build/cluster-build.log 2>&1 </dev/null &
	@echo "cluster binaries: built or found in the background (log: build/cluster-build.log)"

.PHONY: cluster-down
cluster-down: $(VENV_STAMP) ## Stop the throwaway cluster and the port-forwards into it, remove its state and restore the host settings it changed
	$(MLOPSKIT) cluster down

.PHONY: cluster-status
cluster-status: $(VENV_STAMP) ## Which components of the throwaway cluster run
	$(MLOPSKIT) cluster status

# The chart and the role on the cluster (tests/cluster), in both profiles: deploy, idempotency,
# smoke (kubectl backend), helm test, pod restart, destroy/redeploy, purge; then the OpenShift-like
# profile as a project admin. Builds the images; leaves the cluster down (host settings restored).
.PHONY: test-cluster
test-cluster: $(VENV_STAMP) $(HELM_STAMP) images ## Deploy to the throwaway cluster (both profiles) through Ansible and check it end to end
	$(MLOPSKIT) host chromium >/dev/null
	$(MLOPSKIT) cluster up --profile kubernetes --switch
	$(BIN)/pytest -x tests/cluster/test_kubernetes_profile.py
	$(MLOPSKIT) cluster up --profile openshift --switch
	$(BIN)/pytest -x tests/cluster/test_openshift_profile.py
	$(MLOPSKIT) cluster down
