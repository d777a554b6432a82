"""The Docker role's sizing check (tasks/validate.yml): one MLflow container's pools against
max_connections, its SFTP sessions against the SFTP memory and process limits, with the
contract's numbers (images/contract.yaml, sizing) and a message naming the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mlopskit.contract import load_contract

from tests.support.docker_role import render_docker_role
from tests.unit.test_contract import run_docker_validation

SIZING = load_contract().sizing


def refused(tmp_path: Path, settings: dict[str, Any]) -> str:
    result = run_docker_validation(tmp_path, settings)
    assert result.returncode != 0, result.stdout[-2000:]
    return " ".join(result.stdout.split())


def test_defaults_pass_the_sizing_check(tmp_path: Path) -> None:
    result = run_docker_validation(tmp_path, {})
    assert "Check the sizing" in result.stdout
    assert "PostgreSQL connections but" not in result.stdout
    assert "the SFTP server would be OOM-killed" not in result.stdout


def test_too_many_workers_for_max_connections_names_the_numbers_and_the_fix(
    tmp_path: Path,
) -> None:
    need = SIZING.db_connections(1, 16, 2, 0)
    assert need == 108
    message = refused(
        tmp_path, {"mlops_docker_mlflow_workers": 16, "mlops_docker_sftp_memory": "2g"}
    )
    assert (
        f"MLflow may hold {need} PostgreSQL connections but "
        "mlops_docker_postgresql_max_connections is 100: 16 workers (mlops_docker_mlflow_workers) "
        "x 3 pools per worker x "
        "(mlops_docker_mlflow_db_pool_size 2 + mlops_docker_mlflow_db_max_overflow 0), plus 2 of "
        "the server process and 10 reserved. Raise mlops_docker_postgresql_max_connections to 108"
    ) in message


@pytest.mark.parametrize(
    "settings",
    [
        {"mlops_docker_postgresql_max_connections": 108},
        {"mlops_docker_mlflow_workers": 14},
        {"mlops_docker_auth_enabled": False},
    ],
    ids=["max-connections", "workers", "auth-off"],
)
def test_each_fix_passes(tmp_path: Path, settings: dict[str, Any]) -> None:
    base = {"mlops_docker_mlflow_workers": 16, "mlops_docker_sftp_memory": "2g"}
    result = run_docker_validation(tmp_path, {**base, **settings})
    assert "PostgreSQL connections but" not in result.stdout, result.stdout[-2000:]


def test_overflow_and_workspaces_count(tmp_path: Path) -> None:
    settings = {
        "mlops_docker_mlflow_db_max_overflow": 10,
        "mlops_docker_mlflow_enable_workspaces": True,
    }
    need = SIZING.db_connections(1, 2, 2, 10, workspaces=True)
    assert need == 2 * 4 * 12 + 3 + 10
    assert f"MLflow may hold {need} PostgreSQL connections" in refused(tmp_path, settings)


def test_sftp_memory_and_processes(tmp_path: Path) -> None:
    sessions = SIZING.sftp_sessions(1, 2)
    need = SIZING.sftp_memory_mib(sessions)
    message = refused(tmp_path, {"mlops_docker_sftp_memory": "100m"})
    assert (
        f"2 MLflow workers (mlops_docker_mlflow_workers) keep {sessions} SFTP sessions open, "
        f"which need about {need} MiB, but mlops_docker_sftp_memory is 100m"
    ) in message
    assert f"Raise mlops_docker_sftp_memory to {need}m" in message
    processes = SIZING.sftp_processes(sessions)
    message = refused(tmp_path, {"mlops_docker_pids_limit": processes - 1})
    assert f"{processes} processes in the SFTP container" in message
    assert f"Raise mlops_docker_pids_limit to {processes}" in message


def test_the_role_sets_the_pool_variables(tmp_path: Path) -> None:
    env = render_docker_role(
        tmp_path,
        "mlops_docker_mlflow_env_base",
        mlops_docker_mlflow_db_pool_size=4,
        mlops_docker_mlflow_db_max_overflow=0,
    )
    assert (env["MLFLOW_DB_POOL_SIZE"], env["MLFLOW_DB_MAX_OVERFLOW"]) == ("4", "0")
