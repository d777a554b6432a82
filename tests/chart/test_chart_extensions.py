"""Extension points (extraEnv ... extraObjects), the render guards and the OpenShift
example's explicit mode (issue 13)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from chartlib import (
    CRD_KINDS,
    MONITORING_API,
    REPO_ROOT,
    Rendered,
    RenderError,
    env_map,
    helm_template,
    merged,
    migrate_container,
    migration_job,
    pod_specs,
    render_notes,
)
from conftest import EXISTING_SECRETS
from test_chart_render import KUBERNETES_VERSION
from test_chart_security import restricted_v2_violations

# A sidecar that restricted-v2 admits: the user's responsibility, as values.yaml says.
SAFE = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}

# The chart's pods share a memory-backed /tmp volume; a read-only root needs one.
TMP = {"volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]}


def extensions(component: str) -> dict[str, Any]:
    """Every extension point of one component, with templates tpl must resolve."""
    return {
        "extraEnv": [
            {"name": "HTTPS_PROXY", "value": "http://proxy.example.com:3128"},
            {"name": "RELEASE_OF", "value": "{{ .Release.Name }}-" + component},
        ],
        "extraEnvFrom": [{"secretRef": {"name": f"{component}-extra-env"}}],
        "extraVolumes": [
            {"name": "team-ca", "configMap": {"name": '{{ include "mlops-kit.fullname" . }}-ca'}}
        ],
        "extraVolumeMounts": [{"name": "team-ca", "mountPath": "/etc/team-ca", "readOnly": True}],
        "extraContainers": [
            {"name": f"{component}-sidecar", "image": "busybox", "securityContext": SAFE, **TMP}
        ],
        "extraInitContainers": [
            {"name": f"{component}-init", "image": "busybox", "securityContext": SAFE, **TMP}
        ],
    }


EXTENDED: dict[str, Any] = {
    "mlflow": extensions("mlflow"),
    "postgresql": extensions("postgresql"),
    "sftp": extensions("sftp"),
    "extraObjects": [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": '{{ include "mlops-kit.fullname" . }}-ca'},
            "data": {"ca.crt": "not a real certificate"},
        },
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-from-a-string\n",
    ],
}
WORKLOADS = {
    "mlflow": ("Deployment", "-mlflow", "mlflow"),
    "postgresql": ("StatefulSet", "-postgresql", "postgresql"),
    "sftp": ("Deployment", "-sftp", "sftp"),
}


def pod_template(rendered: Rendered, component: str) -> dict[str, Any]:
    kind, suffix, _ = WORKLOADS[component]
    return rendered.get(kind, suffix)["spec"]["template"]


def main_container(rendered: Rendered, component: str) -> dict[str, Any]:
    name = WORKLOADS[component][2]
    spec = pod_template(rendered, component)["spec"]
    return next(c for c in spec["containers"] if c["name"] == name)


@pytest.fixture(scope="module")
def extended(helm: Path) -> Rendered:
    return helm_template(helm, EXTENDED)


# ---------- extension points ----------


@pytest.mark.parametrize("component", sorted(WORKLOADS))
def test_extension_points_reach_the_workload(extended: Rendered, component: str) -> None:
    spec = pod_template(extended, component)["spec"]
    main = main_container(extended, component)
    names = [item["name"] for item in main["env"]]
    assert names[-2:] == ["HTTPS_PROXY", "RELEASE_OF"], "extraEnv comes last"
    assert env_map(main)["RELEASE_OF"] == f"smoke-{component}", "extraEnv goes through tpl"
    assert main["envFrom"] == [{"secretRef": {"name": f"{component}-extra-env"}}]
    assert main["volumeMounts"][-1] == {
        "name": "team-ca",
        "mountPath": "/etc/team-ca",
        "readOnly": True,
    }
    assert spec["volumes"][-1] == {"name": "team-ca", "configMap": {"name": "smoke-mlops-kit-ca"}}
    assert spec["containers"][-1]["name"] == f"{component}-sidecar"
    assert spec["initContainers"][-1]["name"] == f"{component}-init", "after the chart's own"


def test_mlflow_migration_steps_get_the_same_extras(extended: Rendered) -> None:
    """The migration Job and the server's wait-schema step get the extensions the server does
    (an extraEnv proxy or CA may be how they reach the database): env, envFrom, mounts and
    volumes, after their own database settings (the same for both)."""
    spec = pod_template(extended, "mlflow")["spec"]
    wait = next(c for c in spec["initContainers"] if c["name"] == "wait-schema")
    job_spec = migration_job(extended)["spec"]["template"]["spec"]
    server = main_container(extended, "mlflow")
    migrate = migrate_container(extended)

    def settings(step: dict) -> list[dict]:  # the Job migrates, the gate does not
        return [item for item in step["env"] if item["name"] != "MLFLOW_DB_UPGRADE"]

    assert settings(wait) == settings(migrate)
    assert wait["volumeMounts"] == migrate["volumeMounts"]
    assert migrate["env"][-2:] == server["env"][-2:], "extraEnv comes last"
    for step in (wait, migrate):
        assert step["envFrom"] == server["envFrom"]
        assert step["volumeMounts"][-1] == server["volumeMounts"][-1]
    assert job_spec["volumes"][-1] == spec["volumes"][-1]


def test_extended_render_is_valid_kubernetes_and_restricted(extended: Rendered) -> None:
    for doc in extended.docs:
        if doc["kind"] not in CRD_KINDS:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    problems = [
        f"{where}: {p}"
        for where, spec in pod_specs(extended)
        for p in restricted_v2_violations(spec, openshift=False)
    ]
    assert not problems


def test_extra_objects_are_rendered_with_tpl(extended: Rendered) -> None:
    assert {"smoke-mlops-kit-ca", "smoke-from-a-string"} <= extended.names("ConfigMap")
    assert not [doc for doc in extended.docs if "{{" in yaml.safe_dump(doc)], (
        "a template was left unrendered"
    )


def test_extra_env_replaces_a_chart_variable_once(helm: Path) -> None:
    """The user wins (as in Bitnami's charts), without a duplicate name in the list."""
    rendered = helm_template(
        helm, {"mlflow": {"extraEnv": [{"name": "MLFLOW_WORKERS", "value": "7"}]}}
    )
    for container in (main_container(rendered, "mlflow"),):
        names = [item["name"] for item in container["env"]]
        assert names.count("MLFLOW_WORKERS") == 1
        assert env_map(container)["MLFLOW_WORKERS"] == "7"


def test_notes_warn_when_extra_env_replaces_a_chart_variable(helm: Path) -> None:
    values = {
        "mlflow": {"extraEnv": [{"name": "MLFLOW_WORKERS", "value": "7"}]},
        "postgresql": {"extraEnv": [{"name": "POSTGRESQL_MAX_CONNECTIONS", "value": "500"}]},
        "sftp": {"extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}]},
    }
    notes = render_notes(helm, values)
    assert "WARNING: extraEnv replaces variables the chart sets" in notes
    assert "mlflow.extraEnv: MLFLOW_WORKERS" in notes
    assert "postgresql.extraEnv: POSTGRESQL_MAX_CONNECTIONS" in notes
    assert "sftp.extraEnv" not in notes, "a new variable is no override"
    assert "WARNING" not in render_notes(helm, {"sftp": values["sftp"]})


def test_notes_warn_that_an_exposed_mlflow_needs_its_public_names(helm: Path) -> None:
    exposed = {"mlflow": {"service": {"type": "LoadBalancer"}}}
    assert "list the\n   load balancer's name" in render_notes(helm, exposed)
    named = {"mlflow": {**exposed["mlflow"], "extraAllowedHosts": ["mlflow.example.com"]}}
    assert "load balancer's name" not in render_notes(helm, named)
    assert "load balancer's name" not in render_notes(helm, {})


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
