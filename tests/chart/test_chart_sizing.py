"""Sizing: the render fails when MLflow's pools could exceed the bundled PostgreSQL's
max_connections or its SFTP sessions the SFTP memory limit, and warns in NOTES where only the
HPA's maximum would (docs/kubernetes.md, "Sizing"; numbers from images/contract.yaml)."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
from chartlib import RenderError, env_map, helm_template, merged, migrate_container, render_notes
from conftest import EXISTING_SECRETS
from mlopskit.contract import load_contract

CONTRACT = load_contract()
SIZING = CONTRACT.sizing
# No generated secrets (RSA keys are slow to make): every render here is quick and the same.
QUICK: dict[str, Any] = {
    **copy.deepcopy(EXISTING_SECRETS),
    "generateSecrets": False,
    "tests": {"accounts": False},
}


def values(**mlflow: Any) -> dict[str, Any]:
    result = copy.deepcopy(QUICK)
    result["mlflow"].update(mlflow)
    return result


def render_error(helm: Path, given: dict[str, Any]) -> str:
    with pytest.raises(RenderError) as failure:
        helm_template(helm, given)
    return " ".join(str(failure.value).split())


HPA_6 = {"autoscaling": {"enabled": True, "maxReplicas": 6}}


def test_defaults_fit_and_their_numbers_are_the_docs(helm: Path) -> None:
    mlflow = CONTRACT.images["mlflow"]
    pool = mlflow.setting("MLFLOW_DB_POOL_SIZE").default
    overflow = mlflow.setting("MLFLOW_DB_MAX_OVERFLOW").default
    max_connections = CONTRACT.images["postgresql"].setting("POSTGRESQL_MAX_CONNECTIONS").default
    # The default HPA maximum, plus the rolling update's pod, fits the default max_connections.
    hpa_pods = 5 + SIZING.rollout_surge
    assert SIZING.db_connections(hpa_pods, 2, pool, overflow) <= max_connections
    assert SIZING.db_connections(hpa_pods + 1, 2, pool, overflow) > max_connections
    rendered = helm_template(helm, values(autoscaling={"enabled": True}))
    assert rendered.get("HorizontalPodAutoscaler", "-mlflow")["spec"]["maxReplicas"] == 5
    strategy = rendered.get("Deployment", "-mlflow")["spec"]["strategy"]["rollingUpdate"]
    assert strategy["maxSurge"] == SIZING.rollout_surge


def test_pool_settings_reach_the_server_and_its_migration_step(helm: Path) -> None:
    rendered = helm_template(helm, values(dbPoolSize=7, dbMaxOverflow=3, workers=1))
    pod = rendered.get("Deployment", "-mlflow")["spec"]["template"]["spec"]
    steps = [*pod["containers"], *pod["initContainers"], migrate_container(rendered)]
    assert {"mlflow", "wait-schema", "migrate"} <= {c["name"] for c in steps}
    for container in steps:
        if container["name"] in {"mlflow", "wait-schema", "migrate"}:
            env = env_map(container)
            assert env["MLFLOW_DB_POOL_SIZE"] == "7"
            assert env["MLFLOW_DB_MAX_OVERFLOW"] == "3"
    defaults = helm_template(helm, QUICK).get("Deployment", "-mlflow")
    env = env_map(defaults["spec"]["template"]["spec"]["containers"][0])
    assert (env["MLFLOW_DB_POOL_SIZE"], env["MLFLOW_DB_MAX_OVERFLOW"]) == ("2", "0")


def test_an_hpa_maximum_the_database_cannot_take_fails_with_the_numbers(helm: Path) -> None:
    message = render_error(helm, values(**HPA_6))
    need = SIZING.db_connections(6 + SIZING.rollout_surge, 2, 2, 0)
    assert need == 108
    assert (
        f"sizing: MLflow may hold {need} PostgreSQL connections but postgresql.maxConnections "
        "is 100: 7 pods (mlflow.autoscaling.maxReplicas (6) plus 1 during a rolling update) "
        "x 2 workers (mlflow.workers) x 3 pools per worker x (mlflow.dbPoolSize 2 + "
        "mlflow.dbMaxOverflow 0), plus 14 of the pods' server processes and 10 reserved. "
        f"Raise postgresql.maxConnections to {need}, or lower mlflow.autoscaling.maxReplicas, "
        "mlflow.workers, mlflow.dbPoolSize or mlflow.dbMaxOverflow"
    ) in message


@pytest.mark.parametrize(
    "fix",
    [
        {"postgresql": {"maxConnections": 108}},
        {"mlflow": {"workers": 1}},
        {"mlflow": {"autoscaling": {"maxReplicas": 5}}},
        {
            "postgresql": {"enabled": False},
            "externalDatabase": {"host": "db", "existingSecret": "x"},
        },
    ],
    ids=["maxConnections", "workers", "maxReplicas", "external-db"],
)
def test_each_fix_the_message_names_makes_it_render(helm: Path, fix: dict[str, Any]) -> None:
    helm_template(helm, merged(values(**HPA_6), fix))


def test_one_connection_too_many_fails(helm: Path) -> None:
    helm_template(helm, merged(values(**HPA_6), {"postgresql": {"maxConnections": 108}}))
    message = render_error(helm, merged(values(**HPA_6), {"postgresql": {"maxConnections": 107}}))
    assert "may hold 108 PostgreSQL connections but postgresql.maxConnections is 107" in message


@pytest.mark.parametrize(
    ("mlflow", "pods"),
    [
        ({"replicaCount": 4, "workers": 4}, 5),
        ({"replicaCount": 2, "workers": 3, "dbMaxOverflow": 2}, 3),
        ({"enableWorkspaces": True, "autoscaling": {"enabled": True}}, 6),
        ({"auth": {"enabled": False}, "workers": 6, "replicaCount": 2}, 3),
    ],
)
def test_the_chart_counts_as_the_contract_does(
    helm: Path, mlflow: dict[str, Any], pods: int
) -> None:
    """The chart's helper and the contract's formula (the docs' table, the Docker role's check)
    agree: the render fails exactly above the contract's number."""
    given = merged(QUICK, {"mlflow": mlflow})
    flat = {"workers": 2, "dbPoolSize": 2, "dbMaxOverflow": 0, **mlflow}
    need = SIZING.db_connections(
        pods,
        flat["workers"],
        flat["dbPoolSize"],
        flat["dbMaxOverflow"],
        auth=flat.get("auth", {}).get("enabled", True),
        workspaces=flat.get("enableWorkspaces", False),
    )
    helm_template(helm, merged(given, {"postgresql": {"maxConnections": need}}))
    message = render_error(helm, merged(given, {"postgresql": {"maxConnections": need - 1}}))
    assert f"may hold {need} PostgreSQL connections" in message


def test_sftp_memory_below_the_steady_sessions_fails(helm: Path) -> None:
    given = merged(values(replicaCount=3), {"sftp": {"resources": {"limits": {"memory": "300Mi"}}}})
    message = render_error(helm, given)
    sessions = SIZING.sftp_sessions(3, 2)
    need = SIZING.sftp_memory_mib(sessions)
    assert (sessions, need) == (120, 316)
    assert (
        f"sizing: 3 MLflow pods (mlflow.replicaCount) x 2 workers keep {sessions} SFTP sessions "
        f"open, which need about {need} MiB, but sftp.resources.limits.memory is 300Mi"
    ) in message
    assert f"Raise sftp.resources.limits.memory to {need}Mi" in message
    helm_template(helm, merged(given, {"sftp": {"resources": {"limits": {"memory": "316Mi"}}}}))
    helm_template(helm, merged(given, {"sftp": {"resources": {"limits": {"memory": "1G"}}}}))


def test_sftp_limits_only_the_hpa_maximum_would_reach_are_a_notes_warning(helm: Path) -> None:
    given = merged(
        values(autoscaling={"enabled": True}),
        {"sftp": {"resources": {"limits": {"memory": "512Mi"}}, "maxStartups": "10:30:100"}},
    )
    notes = " ".join(render_notes(helm, given).split())
    sessions = SIZING.sftp_sessions(6, 2)
    need = SIZING.sftp_memory_mib(sessions)
    assert "SIZING" in notes
    assert f"MLflow keeps {sessions} SFTP sessions open, about {need} MiB" in notes
    assert f"raise it to {need}Mi" in notes
    assert "12 MLflow workers may log in to SFTP at once" in notes
    quiet = " ".join(render_notes(helm, values(autoscaling={"enabled": True})).split())
    assert "SIZING" not in quiet


def test_notes_tell_what_an_external_database_must_accept(helm: Path) -> None:
    given = merged(
        QUICK,
        {
            "postgresql": {"enabled": False},
            "externalDatabase": {"host": "db", "existingSecret": "x"},
        },
    )
    notes = " ".join(render_notes(helm, given).split())
    need = SIZING.db_connections(2, 2, 2, 0)
    assert f"The external PostgreSQL must accept {need} connections from MLflow" in notes


# A pool of 1 is refused: MLflow's writes open a second session while holding one.
@pytest.mark.parametrize(
    "bad", [{"dbPoolSize": 1}, {"dbPoolSize": 101}, {"dbMaxOverflow": -1}, {"dbPoolSize": "2"}]
)
def test_schema_rejects_pool_sizes_outside_the_contract(helm: Path, bad: dict[str, Any]) -> None:
    message = render_error(helm, values(**bad))
    assert "values don't meet the specifications of the schema" in message
    assert re.search(r"dbPoolSize|dbMaxOverflow", message), message
