"""Restore of a Docker-target environment from a backup (backup.py), exactly.

Order: check every checksum and the MLflow version before anything changes; ask; take a
`-before-restore` safety backup; stop MLflow; drop and re-create both databases and load the
dumps (so nothing a newer migration added survives); replace the SFTP data and the secrets;
forget which image migrated the databases. `make restore` then runs `make deploy`, which
migrates the restored schema to the current image if need be and starts MLflow.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

from packaging.version import InvalidVersion, Version

from . import snapshot
from .backup import backup, dump_file, latest_backup, verify
from .docker_env import DockerEnv, docker, docker_env, docker_exec, lines, pg_tool
from .environments import Environment, check_environment
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
SFTP_ROOT_SCRIPT = 'printf "%s\\n" "${SFTP_DATA_ROOT:-/data}"'
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


def _recreate_databases(denv: DockerEnv, backup_dir: Path, manifest: dict) -> None:
    postgresql = denv.container("postgresql")
    databases = manifest["databases"]
    for database in databases:
        if not IDENTIFIER.match(database):
            raise CommandError(f"the backup names a database {database!r}; refusing it")
        log(f"re-creating database {database} from its dump")
        docker_exec(postgresql, PSQL_RECREATE, database, data=RECREATE_SQL)
        with (backup_dir / str(dump_file(manifest["files"], database))).open("rb") as dump:
            pg_tool(
                postgresql, database, "pg_restore", "--single-transaction", "--exit-on-error",
                stdin=dump,
            )  # fmt: skip


def _restore_sftp(denv: DockerEnv, backup_dir: Path, manifest: dict) -> None:
    sftp = denv.container("sftp")
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


def restore(env: Environment, backup_dir: Path) -> Path:
    """Replace the environment's data by the backup's; return the safety backup taken first."""
    started = time.monotonic()
    denv = docker_env(env)
    manifest = verify(backup_dir)
    check_mlflow_version(manifest, image_set().mlflow_version)
    if manifest["environment"] != env.name:
        log(f"note: restoring a backup of {manifest['environment']} into {env.name}")
    safety = backup(env, label="before-restore")
    mlflow = denv.container("mlflow")
    log(f"stopping {mlflow} while its data is replaced")
    docker("stop", "--time", "30", mlflow)
    try:
        # First: from here on the databases no longer match what the record says.
        _forget_migration(denv)
        _recreate_databases(denv, backup_dir, manifest)
        _restore_sftp(denv, backup_dir, manifest)
        _restore_secrets(env, backup_dir)
        _restore_people(env, backup_dir)
    except CommandError as exc:
        raise CommandError(
            f"{exc}\nThe restore stopped half-way and MLflow is stopped. The state before it "
            f"is in {safety}: `make restore ENV={env.name} FROM={safety} YES=1` puts it back"
        ) from None
    log(
        f"data replaced in {time.monotonic() - started:.1f}s: restored {env.name} from "
        f"{backup_dir}; the state before is in {safety}. "
        f"MLflow stays stopped until `make deploy ENV={env.name}` migrates and starts it"
    )
    return safety


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
    denv = docker_env(env)
    backup_dir = Path(source) if source else latest_backup(denv)
    manifest = verify(backup_dir)
    check_mlflow_version(manifest, image_set().mlflow_version)
    confirm_restore(env, backup_dir)
    restore(env, backup_dir)
