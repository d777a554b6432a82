"""Restore of an environment from a backup (backup.py), exactly, on any target.

Order: check every checksum and the MLflow version before anything changes; ask; take a
`-before-restore` safety backup; stop MLflow (Docker: `docker stop`; Kubernetes: scale to 0);
drop and re-create both databases and load the dumps (so nothing a newer migration added
survives); replace the SFTP data; bring back the credentials of a backup of the same kind of
target (Docker: secrets/ and people/; Kubernetes: the release's Secrets and people/). A backup
of the other kind moves the data only: the environment keeps its own credentials, and MLflow
sets the admin's and the people's passwords from them when it starts.
Docker: forget which image migrated the databases; `make restore` then runs `make deploy`, which
migrates the restored schema if need be and starts MLflow. Kubernetes: the migration Job is deleted,
MLflow scaled back; `make restore` then runs `make deploy`, whose Job migrates.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

from packaging.version import InvalidVersion, Version

from . import snapshot
from .backup import (
    KUBE_SECRETS,
    PG_DATABASES_SCRIPT,
    SFTP_ROOT_SCRIPT,
    backup,
    backup_root,
    dump_file,
    latest_backup,
    verify,
)
from .docker_env import (
    DockerEnv,
    ExecTarget,
    docker,
    docker_env,
    docker_exec,
    lines,
    pg_tool,
    read_settings,
)
from .environments import Environment, check_environment
from .kube_env import KUBE_TARGETS, SECRET_COMPONENTS, KubeEnv, kube_env
from .shell import CommandError, log
from .versions import image_set

IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
RECREATE_SQL = b"""\
SET client_min_messages = warning;
SELECT format('DROP DATABASE IF EXISTS %I WITH (FORCE)', :'db') \\gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'owner') \\gexec
"""
PSQL_RECREATE = (
    'PGPASSWORD="$(cat "$POSTGRESQL_PASSWORD_FILE")" exec psql -X -q -v ON_ERROR_STOP=1 '
    '-v db="$1" -v owner="$POSTGRESQL_APP_USER" --username postgres --dbname postgres'
)
APP_USER_SCRIPT = 'printf "%s\\n" "$POSTGRESQL_APP_USER"'
# Secrets of the PostgreSQL cluster, which a restore keeps (it restores databases, not the
# cluster): the image sets the superuser password through a login with the current one.
CLUSTER_SECRETS = ("postgresql_superuser_password",)


def _version(ref: str) -> Version | None:
    try:
        return Version(ref.rsplit(":", 1)[-1])
    except InvalidVersion:
        return None


def check_mlflow_version(manifest: dict, current: str) -> None:
    """Refuse a backup whose schema is newer than the current MLflow image can open."""
    taken = _version(manifest.get("images", {}).get("mlflow", ""))
    now = Version(current)
    if taken is None or taken == now:
        return
    if taken > now:
        raise CommandError(
            f"this backup was taken with MLflow {taken}, the images run MLflow {now}: its "
            "databases carry a newer schema, and MLflow has no downgrade. Set MLFLOW_VERSION="
            f"{taken} in images/versions.env and run `make images` first, or restore an older "
            "backup; nothing was changed"
        )
    log(f"the backup was taken with MLflow {taken}; the deploy after it migrates it to {now}")


def _recreate_databases(postgresql: ExecTarget, backup_dir: Path, manifest: dict) -> None:
    """Each dumped database into the environment's database of the same role (tracking, auth):
    the names may differ between environments, and so may the owner, which becomes the
    environment's application user."""
    dumped = manifest["databases"]
    current = lines(docker_exec(postgresql, PG_DATABASES_SCRIPT))
    if len(dumped) != len(current):
        raise CommandError(
            f"the backup holds {len(dumped)} database(s) ({', '.join(dumped)}), this environment "
            f"has {len(current)} ({', '.join(current)}): enable or disable MLflow's "
            "authentication here as it was where the backup was taken; nothing was changed"
        )
    (owner,) = lines(docker_exec(postgresql, APP_USER_SCRIPT))
    for name in (*dumped, *current, owner):
        if not IDENTIFIER.match(name):
            raise CommandError(f"refusing the database or role name {name!r}; nothing was changed")
    for source, database in zip(dumped, current, strict=True):
        log(f"re-creating database {database} from the dump of {source}")
        docker_exec(postgresql, PSQL_RECREATE, database, data=RECREATE_SQL)
        with (backup_dir / str(dump_file(manifest["files"], source))).open("rb") as dump:
            # As the application user (SET ROLE): the objects become its own, whoever owned
            # them where the dump was taken.
            pg_tool(
                postgresql, database, "pg_restore", "--single-transaction", "--exit-on-error",
                "--no-owner", "--no-privileges", f"--role={owner}", stdin=dump,
            )  # fmt: skip


def _restore_sftp(sftp: ExecTarget, backup_dir: Path, manifest: dict) -> None:
    (data_root,) = lines(docker_exec(sftp, SFTP_ROOT_SCRIPT))
    log(f"replacing the SFTP data under {data_root}")
    if "sftp-data.tar" in manifest["files"]:  # backups of format 1: one tar of the volume
        with (backup_dir / "sftp-data.tar").open("rb") as archive:
            docker_exec(sftp, snapshot.TAR_IN_SCRIPT, data_root, stdin=archive)
    else:
        snapshot.copy_in(sftp, data_root, backup_dir, manifest)


def _restore_secrets(env: Environment, backup_dir: Path) -> None:
    source = backup_dir / "secrets"
    if not source.is_dir():
        return
    current = env.build_dir / "secrets"
    incoming = env.build_dir / "secrets.restoring"
    shutil.rmtree(incoming, ignore_errors=True)
    env.build_dir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, incoming)
    incoming.chmod(0o700)
    for name in CLUSTER_SECRETS:
        if (current / name).is_file():
            shutil.copy2(current / name, incoming / name)
    if current.exists():
        outgoing = env.build_dir / "secrets.replaced"
        shutil.rmtree(outgoing, ignore_errors=True)
        current.rename(outgoing)
        incoming.rename(current)
        shutil.rmtree(outgoing)
    else:
        incoming.rename(current)
    log(f"restored the secrets of the backup into {current}")


def _restore_people(env: Environment, backup_dir: Path) -> None:
    """Each person's password and keys as they were; the deploy after the restore drops
    people no longer listed in deploy/<env>/people.yml and makes what is missing."""
    source = backup_dir / "people"
    if not source.is_dir():
        return
    current = env.build_dir / "people"
    shutil.rmtree(current, ignore_errors=True)
    shutil.copytree(source, current)
    current.chmod(0o700)
    log(f"restored the people's credentials of the backup into {current}")


def _forget_migration(denv: DockerEnv) -> None:
    try:
        denv.migration_record.unlink(missing_ok=True)
    except OSError as exc:
        raise CommandError(
            f"cannot remove {denv.migration_record} ({exc.strerror}); remove it by hand so "
            f"that `make deploy ENV={denv.env.name}` runs the migration"
        ) from None


def _same_kind(manifest: dict, target: str) -> bool:
    """Was the backup taken on this kind of target? Credentials only restore within a kind:
    a Docker environment keeps files on the controller, a release keeps Secrets."""
    return (manifest.get("target", "docker") in KUBE_TARGETS) == (target in KUBE_TARGETS)


def restore(env: Environment, backup_dir: Path) -> Path:
    """Replace the environment's data by the backup's; return the safety backup taken first."""
    started = time.monotonic()
    manifest = verify(backup_dir)
    check_mlflow_version(manifest, image_set().mlflow_version)
    target = str(read_settings(env).get("mlops_target"))
    if manifest["environment"] != env.name:
        log(f"note: restoring a backup of {manifest['environment']} into {env.name}")
    same_kind = _same_kind(manifest, target)
    if not same_kind:
        log(
            f"note: the backup comes from target {manifest.get('target', 'docker')}: its data "
            f"moves into {env.name}, whose passwords and keys stay as they are (MLflow sets its "
            "admin's and the people's passwords from them when it starts)"
        )
    replace = _restore_kube if target in KUBE_TARGETS else _restore_docker
    safety = replace(env, backup_dir, manifest, same_kind)
    log(
        f"data replaced in {time.monotonic() - started:.1f}s: restored {env.name} from "
        f"{backup_dir}; the state before is in {safety}"
    )
    return safety


def _half_way(env: Environment, safety: Path, exc: CommandError) -> CommandError:
    return CommandError(
        f"{exc}\nThe restore stopped half-way and MLflow is stopped. The state before it "
        f"is in {safety}: `make restore ENV={env.name} FROM={safety} YES=1` puts it back"
    )


def _restore_docker(env: Environment, backup_dir: Path, manifest: dict, same_kind: bool) -> Path:
    denv = docker_env(env)
    safety = backup(env, label="before-restore")
    mlflow = denv.container("mlflow")
    log(f"stopping {mlflow} while its data is replaced")
    docker("stop", "--time", "30", mlflow)
    try:
        # First: from here on the databases no longer match what the record says.
        _forget_migration(denv)
        _recreate_databases(denv.container("postgresql"), backup_dir, manifest)
        _restore_sftp(denv.container("sftp"), backup_dir, manifest)
        if same_kind:
            _restore_secrets(env, backup_dir)
            _restore_people(env, backup_dir)
    except CommandError as exc:
        raise _half_way(env, safety, exc) from None
    log(f"MLflow stays stopped until `make deploy ENV={env.name}` migrates and starts it")
    return safety


def _restore_kube(env: Environment, backup_dir: Path, manifest: dict, same_kind: bool) -> Path:
    """Through the API: MLflow scaled to 0, the databases and the SFTP data replaced in their
    pods, the release's Secrets patched back (a backup of a release), the pods whose Secrets
    changed restarted, the migration Job deleted (the deploy after it runs it again), MLflow
    scaled back."""
    kenv = kube_env(env)
    safety = backup(env, label="before-restore")
    mlflow = kenv.workload("mlflow")
    # 0 only after a restore that stopped half-way: MLflow must serve again after this one.
    replicas = kenv.replicas(mlflow) or 1
    log(f"scaling {mlflow} to 0 while its data is replaced")
    kenv.scale(mlflow, 0, "mlflow")
    try:
        _recreate_databases(kenv.exec_target("postgresql"), backup_dir, manifest)
        _restore_sftp(kenv.exec_target("sftp"), backup_dir, manifest)
        if same_kind:
            changed = _restore_kube_secrets(kenv, backup_dir)
            _restore_people(env, backup_dir)
            for component in ("postgresql", "sftp"):
                if component in changed:
                    workload = kenv.workload(component)
                    log(f"restarting {workload} on its restored Secrets")
                    kenv.run("rollout", "restart", workload)
                    kenv.rollout_status(workload)
    except CommandError as exc:
        raise _half_way(env, safety, exc) from None
    _forget_kube_migration(kenv)
    # Its pods wait in their init container until the deploy's migration Job has run.
    log(f"scaling {mlflow} back to {replicas}; `make deploy ENV={env.name}` migrates and starts it")
    kenv.run("scale", mlflow, f"--replicas={replicas}")
    return safety


def _forget_kube_migration(kenv: KubeEnv) -> None:
    """Delete the release's migration Jobs, the record that the schema was migrated: the next
    deploy runs the migration again on the restored databases."""
    for job in kenv.run("get", "jobs", "-l", kenv.selector("migrate"), "-o", "name").split():
        log(f"forgetting the migration: deleting {job}")
        kenv.run("delete", job, "--wait=true")


def _restore_kube_secrets(kenv: KubeEnv, backup_dir: Path) -> set[str]:
    """Patch the release's Secrets back to the backup's; return the components whose changed."""
    path = backup_dir / KUBE_SECRETS
    if not path.is_file():
        return set()
    saved = json.loads(path.read_text())
    changed: set[str] = set()
    for component in SECRET_COMPONENTS:
        for secret in kenv.items("secrets", component):
            name = secret["metadata"]["name"]
            if name not in saved:
                log(f"note: the backup holds no Secret {name}; it stays as it is")
            elif kenv.patch_secret(name, saved[name]):
                log(f"restored the Secret {name}")
                changed.add(component)
    return changed


def confirm_restore(env: Environment, backup_dir: Path) -> None:
    if os.environ.get("YES", "").lower() in {"1", "true", "yes"}:
        return
    try:
        answer = input(
            f"Replace ALL data of {env.name} by the backup {backup_dir}? "
            "(a safety backup is taken first) Type the environment name to go on: "
        )
    except EOFError:
        raise CommandError("no terminal to confirm the restore; run it with YES=1") from None
    if answer.strip() != env.name:
        raise CommandError("restore cancelled; nothing was changed")


def restore_command(env_name: str, source: str) -> None:
    env = check_environment(env_name)
    backup_dir = Path(source) if source else latest_backup(backup_root(env), env.name)
    manifest = verify(backup_dir)
    check_mlflow_version(manifest, image_set().mlflow_version)
    confirm_restore(env, backup_dir)
    restore(env, backup_dir)
