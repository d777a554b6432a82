"""The render guards and the OpenShift example's explicit mode (issue 13)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from chartlib import (
    MONITORING_API,
    REPO_ROOT,
    RenderError,
    helm_template,
    pod_specs,
)
from conftest import EXISTING_SECRETS
from test_chart_security import restricted_v2_violations


def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# ---------- guards ----------

MONITOR = {"mlflow": {"metrics": {"serviceMonitor": {"enabled": True}}}}


def test_service_monitor_without_its_api_fails_with_the_fix(helm: Path) -> None:
    with pytest.raises(RenderError) as failure:
        helm_template(helm, MONITOR)
    message = str(failure.value)
    assert "mlflow.metrics.serviceMonitor.enabled" in message
    assert "monitoring.coreos.com/v1" in message
    assert "--api-versions monitoring.coreos.com/v1" in message, "the GitOps hint"
    assert helm_template(helm, MONITOR, MONITORING_API).of_kind("ServiceMonitor")


def test_hpa_min_above_max_is_refused(helm: Path) -> None:
    scaling = {"enabled": True, "minReplicas": 5, "maxReplicas": 3}
    with pytest.raises(RenderError) as failure:
        helm_template(helm, {"mlflow": {"autoscaling": scaling}})
    message = str(failure.value)
    assert "mlflow.autoscaling.minReplicas (5)" in message
    assert "mlflow.autoscaling.maxReplicas (3)" in message
    scaling["minReplicas"] = 3
    hpa = helm_template(helm, {"mlflow": {"autoscaling": scaling}}).get(
        "HorizontalPodAutoscaler", "-mlflow"
    )
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 3)


# No generated RSA keys (slow): every Secret exists already, no test accounts.
QUICK = merged(EXISTING_SECRETS, {"tests": {"accounts": False}})


# ---------- the OpenShift example environment ----------


def test_openshift_example_forces_openshift_mode(helm: Path) -> None:
    """Without the Route API (helm template, no cluster-read rights) auto mode would pin
    runAsUser/fsGroup, which restricted-v2 rejects."""
    values = yaml.safe_load((REPO_ROOT / "deploy/openshift-example/values.yaml").read_text())
    assert values["openshift"]["enabled"] is True
    rendered = helm_template(
        helm, merged(merged(values, QUICK), {"mlflow": {"route": {"host": "m.apps.example.com"}}})
    )
    assert rendered.of_kind("Route")
    problems = [
        f"{where}: {p}"
        for where, spec in pod_specs(rendered)
        for p in restricted_v2_violations(spec, openshift=True)
    ]
    assert not problems
