"""`make upgrade` across PostgreSQL major versions on the Docker target, by dump and restore.

A PostgreSQL data directory opens only with the binaries of the major that made it (the image
refuses another one, exit 78). When the target major (deploy/<env>/settings.yml
mlops_docker_postgresql_major, else the environment's POSTGRESQL_MAJOR, else images/versions.env)
differs from the major of the data (PG_VERSION in the running container's PGDATA):

  1. refuse a downgrade before anything changes (pre_upgrade_check, from `stack pre-upgrade`);
  2. after `make images`: provide the new image, stop MLflow, take the usual `-before-upgrade`
     backup (nothing writes any more: it is the last state) and count every table's rows;
  3. stop PostgreSQL, copy its volume into <prefix>-pgdata-<old major> (checked with diff -r;
     kept, never deleted: `make destroy PURGE=1` leaves it too), then remove the old volume;
  4. deploy PostgreSQL alone on a fresh volume with the new major (the role stops after it:
     mlops_postgresql_only), load the backup's dumps into it (restore.py) and compare the row
     counts; then `make upgrade` deploys the rest (the migration runs on the restored schema).

build/<env>/postgresql-upgrade.json records a move in progress: while it exists the role does
not start MLflow, and the next `make upgrade` resumes at step 4 from the same backup.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .backup import BEFORE_UPGRADE, backup, verify
from .docker_env import (
    container_image,
    container_state,
    docker,
    docker_env,
    docker_exec,
    pg_tool,
    read_settings,
)
from .environments import Environment
from .restore import _forget_migration, _recreate_databases
from .shell import CommandError, log, run, succeeds
from .versions import REPO_ROOT, VERSIONS_FILE, checked_postgresql_major, read_env_file

DATA_MOUNT = "/var/lib/postgresql/data"
MARKER = "postgresql-upgrade.json"
KEPT_LABEL = "io.mlops-kit.kept-from"
# Every user table and its exact row count, one `schema.table|count` line each (PostgreSQL 13+).
TABLE_COUNTS_SQL = """
SELECT format('%I.%I', schemaname, tablename) || '|' ||
       (xpath('/row/c/text()', query_to_xml(
          format('SELECT count(*) AS c FROM %I.%I', schemaname, tablename), false, true, '')))[1]
FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1
"""
COPY_SCRIPT = "cp -a /from/. /to/ && diff -r /from /to >/dev/null && du -sk /to | cut -f1"


class DowngradeError(CommandError):
    """The target major is older than the data's."""


@dataclass(frozen=True)
class Plan:
    env: Environment
    data_major: str
    target_major: str
    source: str  # where the target major comes from

    @property
    def moves(self) -> bool:
        return self.data_major != self.target_major


def target_major(env: Environment) -> tuple[str, str]:
    """The major the environment should run, and which setting says so."""
    setting = str(read_settings(env).get("mlops_docker_postgresql_major") or "").strip()
    if setting:
        where = f"deploy/{env.name}/settings.yml mlops_docker_postgresql_major"
        return checked_postgresql_major(setting, where), where
    if variable := os.environ.get("POSTGRESQL_MAJOR", "").strip():
        return checked_postgresql_major(variable, "POSTGRESQL_MAJOR"), "POSTGRESQL_MAJOR"
    return read_env_file(VERSIONS_FILE)["POSTGRESQL_MAJOR"], "images/versions.env POSTGRESQL_MAJOR"


def data_major(env: Environment, container: str) -> str:
    """The major of the cluster in the running PostgreSQL container (its PG_VERSION)."""
    if container_state(container).get("Status") != "running":
        raise CommandError(
            f"{container} is not running, so its data cannot be read or dumped. Start it on the "
            f"major its data were made by (`docker logs {container}` names it): "
            f"make deploy ENV={env.name} POSTGRESQL_MAJOR=<that major>; then make upgrade again"
        )
    return docker_exec(container, 'cat "$PGDATA/PG_VERSION"').strip()


def check_direction(plan: Plan) -> None:
    if int(plan.target_major) < int(plan.data_major):
        raise DowngradeError(
            f"{plan.env.name} holds PostgreSQL {plan.data_major} data and {plan.source} asks for "
            f"PostgreSQL {plan.target_major}: that is a downgrade, which PostgreSQL does not "
            f"support (a dump of {plan.data_major} need not load into {plan.target_major}). "
            f"Nothing was changed. Set it back to {plan.data_major} (or higher); to return to "
            f"older data, restore a backup taken on PostgreSQL {plan.target_major} or the volume "
            f"an earlier upgrade kept (docs/operations.md#postgresql-major-upgrade)"
        )


def plan_for(env: Environment) -> Plan:
    denv = docker_env(env)
    target, source = target_major(env)
    plan = Plan(env, data_major(env, denv.container("postgresql")), target, source)
    check_direction(plan)
    return plan


def marker_path(env: Environment) -> Path:
    return env.build_dir / MARKER


def pre_upgrade_check(env: Environment) -> bool:
    """Before `make images`: True when the data must move to another major (a downgrade is
    refused here, before anything changes)."""
    if marker_path(env).is_file():
        log(f"a PostgreSQL major upgrade of {env.name} is unfinished; `make upgrade` resumes it")
        return True
    plan = plan_for(env)
    if plan.moves:
        log(
            f"PostgreSQL {plan.data_major} -> {plan.target_major} ({plan.source}): the data move "
            "by dump and restore after the images are built; the backup is taken then, with "
            "MLflow stopped, so it holds the last state"
        )
    return plan.moves


def volume_exists(name: str) -> bool:
    return succeeds(["docker", "volume", "inspect", name])


def data_volume(container: str) -> str:
    result = subprocess.run(
        ["docker", "inspect", "--format", "{{json .Mounts}}", container],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    mounts = json.loads(result.stdout) if result.returncode == 0 else []
    for mount in mounts or []:
        if mount.get("Destination") == DATA_MOUNT and mount.get("Type") == "volume":
            return str(mount["Name"])
    raise CommandError(f"{container} has no data volume at {DATA_MOUNT}; nothing was changed")


def table_counts(container: str, databases: list[str]) -> dict[str, str]:
    counts = {}
    for database in databases:
        out = pg_tool(
            container, database, "psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1",
            "-c", TABLE_COUNTS_SQL,
        )  # fmt: skip
        for line in out.splitlines():
            if line.strip():
                table, _, count = line.partition("|")
                counts[f"{database}:{table}"] = count
    return counts


def server_major(container: str) -> str:
    out = pg_tool(container, "postgres", "psql", "-X", "-A", "-t", "-c", "SHOW server_version_num")
    return str(int(out.strip()) // 10000)


def provide_image(env: Environment, major: str) -> str:
    """The PostgreSQL image of ``major`` as the role names it, built now if missing (while
    MLflow still serves)."""
    from .build import build_all
    from .versions import image_set

    settings = read_settings(env)
    images = image_set(prefix=settings.get("mlops_docker_image_prefix") or None,
                       postgresql_major=major)  # fmt: skip
    ref = images.ref("postgresql")
    if settings.get("mlops_docker_image_source", "build") == "build" and not succeeds(
        ["docker", "image", "inspect", ref]
    ):
        log(f"building {ref}")
        os.environ["IMAGE_PREFIX"] = images.prefix
        build_all(("postgresql",), postgresql_major=major)
    return ref


def deploy_postgresql_only(env: Environment, major: str) -> None:
    """The role, up to a healthy PostgreSQL (tasks/containers.yml: mlops_postgresql_only)."""
    playbook = Path(sys.executable).parent / "ansible-playbook"
    run(
        [str(playbook) if playbook.exists() else "ansible-playbook",
         "-i", str(env.deploy_dir / "inventory.yml"),
         "-e", f"@{env.deploy_dir / 'settings.yml'}",
         "-e", f"mlops_env={env.name}",
         "-e", "mlops_postgresql_only=true",
         str(REPO_ROOT / "ansible" / "deploy.yml")],
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible" / "ansible.cfg"),
             "POSTGRESQL_MAJOR": major},
        cwd=REPO_ROOT,
    )  # fmt: skip


def keep_old_volume(old_image: str, volume: str, kept: str, env: Environment, major: str) -> str:
    """Copy the stopped cluster's volume into ``kept`` and check the copy; return its size."""
    run(["docker", "volume", "create", "--label", f"{KEPT_LABEL}={env.name}",
         "--label", f"io.mlops-kit.postgresql-major={major}", kept], capture=True)  # fmt: skip
    out = run(
        ["docker", "run", "--rm", "--network", "none", "--user", "0:0", "--entrypoint", "sh",
         "-v", f"{volume}:/from:ro", "-v", f"{kept}:/to", old_image, "-c", COPY_SCRIPT],
        capture=True,
    )  # fmt: skip
    return out.stdout.decode().strip() + " kB"


def _save(marker: Path, state: dict) -> None:
    marker.write_text(json.dumps(state, indent=1) + "\n")


def _start_move(env: Environment, marker: Path) -> dict | None:
    """Stop MLflow, back up, count the rows, record the move; None when there is none."""
    denv = docker_env(env)
    postgresql, mlflow = denv.container("postgresql"), denv.container("mlflow")
    plan = plan_for(env)
    if not plan.moves:
        log(f"PostgreSQL {plan.data_major} is the target major; no data to move")
        return None
    new_image = provide_image(env, plan.target_major)
    kept = f"{denv.prefix}-pgdata-{plan.data_major}"
    if volume_exists(kept):
        raise CommandError(
            f"Docker volume {kept} exists already (an earlier upgrade kept PostgreSQL "
            f"{plan.data_major} data there); check it, keep a copy if need be, remove it "
            f"(docker volume rm {kept}) and run make upgrade again. Nothing was changed"
        )
    log(f"stopping {mlflow}: PostgreSQL {plan.data_major} -> {plan.target_major}")
    docker("stop", "--time", "30", mlflow)
    try:
        backup_dir = backup(env, label=BEFORE_UPGRADE)
        manifest = verify(backup_dir)
        state = {
            "stage": "copying", "from": plan.data_major, "to": plan.target_major,
            "backup": str(backup_dir), "volume": data_volume(postgresql), "kept_volume": kept,
            "old_image": container_image(postgresql), "new_image": new_image,
            "counts": table_counts(postgresql, manifest["databases"]),
        }  # fmt: skip
    except BaseException:
        docker("start", mlflow)
        log(f"nothing was changed; {mlflow} runs again")
        raise
    _save(marker, state)
    return state


def _keep_old_data(env: Environment, marker: Path, state: dict) -> None:
    """Stage copying: the old cluster, stopped, copied into the kept volume, then removed."""
    postgresql = docker_env(env).container("postgresql")
    volume, kept = state["volume"], state["kept_volume"]
    log(f"stopping {postgresql} and keeping its volume {volume} as {kept}")
    if container_state(postgresql):
        docker("stop", "--time", "60", postgresql)
        docker("rm", postgresql)
    if volume_exists(kept):  # a copy that stopped half-way; the original is still whole
        docker("volume", "rm", kept)
    size = keep_old_volume(state["old_image"], volume, kept, env, state["from"])
    log(f"PostgreSQL {state['from']} data ({size}) copied to volume {kept} and compared")
    docker("volume", "rm", volume)
    state["stage"] = "restoring"
    _save(marker, state)


def _restore_into_new_major(env: Environment, state: dict) -> int:
    """Stage restoring: PostgreSQL of the new major on a fresh volume, the dumps loaded."""
    log(f"starting PostgreSQL {state['to']} on a fresh volume")
    deploy_postgresql_only(env, state["to"])
    denv = docker_env(env)
    postgresql = denv.container("postgresql")
    if (running := server_major(postgresql)) != state["to"]:
        raise CommandError(f"{postgresql} runs PostgreSQL {running}, not {state['to']}")
    backup_dir = Path(state["backup"])
    manifest = verify(backup_dir)
    _forget_migration(denv)
    _recreate_databases(postgresql, backup_dir, manifest)
    counts = table_counts(postgresql, manifest["databases"])
    if counts != state["counts"]:
        differ = sorted(k for k in set(counts) | set(state["counts"])
                        if counts.get(k) != state["counts"].get(k))  # fmt: skip
        raise CommandError(f"the restored tables differ from the old ones: {differ[:10]}")
    return len(counts)


def move(env: Environment) -> None:
    """Steps 2-4 of the module's docstring, or what is left of them; a no-op when the majors
    agree."""
    marker = marker_path(env)
    started = time.monotonic()
    if marker.is_file():
        state = json.loads(marker.read_text())
        log(f"resuming the PostgreSQL {state['from']} -> {state['to']} upgrade of {env.name}")
    else:
        state = _start_move(env, marker)
        if state is None:
            return
    where = (
        f"The PostgreSQL {state['from']} data are unchanged in Docker volume "
        f"{state['volume'] if state['stage'] == 'copying' else state['kept_volume']} "
        f"and their dumps in {state['backup']}"
    )
    try:
        if state["stage"] == "copying":
            _keep_old_data(env, marker, state)
            where = where.replace(state["volume"], state["kept_volume"])
        tables = _restore_into_new_major(env, state)
    except CommandError as exc:
        raise CommandError(
            f"{exc}\nThe PostgreSQL {state['from']} -> {state['to']} upgrade stopped half-way "
            f"and MLflow is stopped. {where}. Fix the cause and run `make upgrade "
            f"ENV={env.name}` again: it goes on where it stopped "
            f"({marker}; docs/operations.md#postgresql-major-upgrade)"
        ) from None
    marker.unlink()
    log(
        f"PostgreSQL {state['from']} -> {state['to']}: {tables} tables restored with the "
        f"same row counts in {time.monotonic() - started:.0f}s. {where}; remove the volume "
        f"(docker volume rm {state['kept_volume']}) once you no longer need it. The deploy "
        "that follows migrates and starts MLflow"
    )


def upgrade_postgresql_command(env_name: str) -> None:
    from .environments import check_environment

    env = check_environment(env_name)
    if read_settings(env).get("mlops_target") != "docker":
        return
    move(env)


def kept_volumes(env_name: str) -> list[str]:
    """The volumes earlier PostgreSQL major upgrades of the environment kept."""
    if shutil.which("docker") is None:
        return []
    result = subprocess.run(
        ["docker", "volume", "ls", "--format", "{{.Name}}",
         "--filter", f"label={KEPT_LABEL}={env_name}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return sorted(result.stdout.split()) if result.returncode == 0 else []
