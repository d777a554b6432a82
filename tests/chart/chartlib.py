"""Rendering the chart and walking its output: shared by the tests in tests/chart."""

from __future__ import annotations

import copy
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "charts" / "mlops-kit"
RELEASE = "smoke"
NAMESPACE = "mlops-test"
POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod"}
# Kinds that are not in Kubernetes' own schemas (CRDs of OpenShift and prometheus-operator).
CRD_KINDS = {"Route", "ServiceMonitor"}
OPENSHIFT_API = ["--api-versions", "route.openshift.io/v1"]
# The Prometheus Operator's API: a ServiceMonitor renders only where the cluster serves it.
MONITORING_API = ["--api-versions", "monitoring.coreos.com/v1"]


class RenderError(Exception):
    """helm template failed; the message is helm's."""


@dataclass
class Rendered:
    """The documents of one `helm template` run, with look-ups by kind and component."""

    docs: list[dict[str, Any]]
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [doc for doc in self.docs if doc["kind"] == kind]

    def get(self, kind: str, name_suffix: str) -> dict[str, Any]:
        found = [d for d in self.of_kind(kind) if d["metadata"]["name"].endswith(name_suffix)]
        if len(found) != 1:
            names = [d["metadata"]["name"] for d in self.of_kind(kind)]
            raise KeyError(f"{len(found)} {kind} named *{name_suffix} in {names}")
        return found[0]

    def names(self, kind: str) -> set[str]:
        return {doc["metadata"]["name"] for doc in self.of_kind(kind)}


def helm_template(
    helm: Path, values: dict[str, Any], extra_args: list[str] | tuple[str, ...] = ()
) -> Rendered:
    """Run helm template with values (as a file) and return the parsed documents."""
    command = [
        str(helm), "template", RELEASE, str(CHART_DIR), "--namespace", NAMESPACE,
        "--values", "-", *extra_args,
    ]  # fmt: skip
    result = subprocess.run(
        command, input=yaml.safe_dump(values), capture_output=True, text=True, timeout=180
    )
    if result.returncode != 0:
        raise RenderError(result.stderr.strip())
    docs = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    return Rendered(docs=docs)


def pod_specs(rendered: Rendered) -> Iterator[tuple[str, dict[str, Any]]]:
    """(kind/name, pod spec) for every workload, hooks included."""
    for doc in rendered.docs:
        kind = doc["kind"]
        if kind not in POD_KINDS:
            continue
        spec = doc["spec"]
        if kind == "CronJob":
            spec = spec["jobTemplate"]["spec"]
        if kind != "Pod":
            spec = spec["template"]["spec"]
        yield f"{kind}/{doc['metadata']['name']}", spec


def migration_job(rendered: Rendered) -> dict[str, Any]:
    """The chart's migration Job (its name ends in a hash of its pod template)."""
    (job,) = [
        doc for doc in rendered.of_kind("Job")
        if doc["metadata"]["labels"].get("app.kubernetes.io/component") == "migrate"
    ]  # fmt: skip
    return job


def migrate_container(rendered: Rendered) -> dict[str, Any]:
    """The migration Job's `migrate` container."""
    (container,) = migration_job(rendered)["spec"]["template"]["spec"]["containers"]
    return container


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list(spec.get("initContainers") or []) + list(spec["containers"])


def env_names(container: dict[str, Any]) -> set[str]:
    return {item["name"] for item in container.get("env") or []}


def env_map(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item.get("value", "") for item in container.get("env") or []}


def render_notes(
    helm: Path, values: dict[str, Any], extra_args: list[str] | tuple[str, ...] = ()
) -> str:
    """NOTES.txt as helm would print it: `helm template` skips NOTES, so a copy of the chart
    renders it into a ConfigMap (helm install --dry-run needs a cluster)."""
    with tempfile.TemporaryDirectory() as work:
        chart = Path(work) / "mlops-kit"
        shutil.copytree(CHART_DIR, chart)
        notes = (chart / "templates" / "NOTES.txt").read_text()
        (chart / "templates" / "_notes_under_test.tpl").write_text(
            '{{- define "notes-under-test" -}}\n' + notes + "\n{{- end -}}\n"
        )
        (chart / "templates" / "notes-under-test.yaml").write_text(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes-under-test\n"
            'data:\n  notes: {{ include "notes-under-test" . | quote }}\n'
        )
        command = [
            str(helm), "template", RELEASE, str(chart), "--namespace", NAMESPACE,
            "--values", "-", "--show-only", "templates/notes-under-test.yaml", *extra_args,
        ]  # fmt: skip
        result = subprocess.run(
            command, input=yaml.safe_dump(values), capture_output=True, text=True, timeout=180
        )
    if result.returncode != 0:
        raise RenderError(result.stderr.strip())
    return yaml.safe_load(result.stdout)["data"]["notes"]


def merged(*layers: dict[str, Any]) -> dict[str, Any]:
    """Values layered like several -f files: maps merge, anything else is replaced (copies)."""
    result: dict[str, Any] = {}
    for layer in layers:
        _merge_into(result, copy.deepcopy(layer))
    return result


def _merge_into(into: dict[str, Any], layer: dict[str, Any]) -> None:
    for key, value in layer.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge_into(into[key], value)
        else:
            into[key] = value
