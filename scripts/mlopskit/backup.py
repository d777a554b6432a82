"""Backup and restore of a Docker-target environment: both databases and the SFTP data.

A backup is a directory build/<env>/backups/<UTC time>/ (mode 0700) with
  postgres-<db>.dump   pg_dump custom format of the tracking and the auth database,
  sftp-data.tar        everything under the SFTP volume (artifacts, DVC objects, host keys),
  secrets/             the environment's generated secrets (the auth DB's admin hash needs them),
  manifest.json        sizes and SHA-256 of every file, image references, time.
Restore checks every checksum before it touches anything, takes a safety backup of the current
state, stops MLflow, replaces the databases and the SFTP data, and starts MLflow again.
Commands run inside the containers; passwords are read there from the mounted secret files,
so none travels on a command line.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import BinaryIO

import yaml

from .environments import Environment, check_environment
from .shell import CommandError, log
from .versions import IMAGE_NAMES, image_set

# Run in the postgres container: superuser password from its secret file, via the environment.
PG_SHELL = 'PGPASSWORD="$(cat "$POSTGRES_PASSWORD_FILE")" exec "$@"'
PG_DATABASES_SCRIPT = 'printf "%s\\n" "$POSTGRES_APP_DB" "${POSTGRES_AUTH_DB:-}"'
SFTP_ROOT_SCRIPT = 'printf "%s\\n" "${SFTP_DATA_ROOT:-/data}"'
MANIFEST = "manifest.json"


def container_prefix(env: Environment) -> str:
    settings = yaml.safe_load((env.deploy_dir / "settings.yml").read_text()) or {}
    if settings.get("mlops_target") != "docker":
        raise CommandError(
            f"backup and restore cover target docker; deploy/{env.name} has target "
            f"{settings.get('mlops_target')!r} (on Kubernetes use volume snapshots or pg_dump "
            "through kubectl exec)"
        )
    return str(settings.get("mlops_docker_name_prefix") or f"mlops-{env.name}")


def _docker_exec(
    container: str,
    script: str,
    *args: str,
    stdin: BinaryIO | None = None,
    stdout: BinaryIO | None = None,
) -> str:
    """Run ``sh -c script sh args...`` in a container; return its stdout unless redirected."""
    command = ["docker", "exec", "-i", container, "sh", "-c", script, "sh", *args]
    result = subprocess.run(
        command,
        stdin=stdin if stdin is not None else subprocess.DEVNULL,
        stdout=stdout if stdout is not None else subprocess.PIPE,
        stderr=subprocess.PIPE,
        check=False,
        timeout=3600,
    )
    if result.returncode != 0:
        raise CommandError(
            f"`{script[:60]}` in {container} exited {result.returncode}: "
            f"{result.stderr.decode(errors='replace').strip()[-1500:]}"
        )
    return (result.stdout or b"").decode() if stdout is None else ""


def _pg_tool(
    container: str,
    database: str,
    *command: str,
    stdin: BinaryIO | None = None,
    stdout: BinaryIO | None = None,
) -> None:
    """Run a PostgreSQL client tool as the superuser on the local socket (the image's PGHOST)."""
    connection = ("--username", "postgres", "--dbname", database)
    _docker_exec(container, PG_SHELL, *command, *connection, stdin=stdin, stdout=stdout)


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def backup(env: Environment, *, label: str = "") -> Path:
    prefix = container_prefix(env)
    postgres, sftp = f"{prefix}-postgres", f"{prefix}-sftp"
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + (f"-{label}" if label else "")
    target = _private_dir(_private_dir(env.build_dir / "backups") / stamp)
    log(f"backing up {env.name} into {target}")
    databases = _lines(_docker_exec(postgres, PG_DATABASES_SCRIPT))
    for database in databases:
        with (target / f"postgres-{database}.dump").open("wb") as out:
            _pg_tool(postgres, database, "pg_dump", "--format=custom", stdout=out)
    (data_root,) = _lines(_docker_exec(sftp, SFTP_ROOT_SCRIPT))
    with (target / "sftp-data.tar").open("wb") as out:
        # Members are the root's children, not "." itself: the volume's root directory
        # belongs to root, and tar run as the SFTP user could not restore its mode.
        _docker_exec(
            sftp,
            'cd "$1" && find . -mindepth 1 -maxdepth 1 -print0 | exec tar --null -T - -cf -',
            data_root,
            stdout=out,
        )
    secrets = env.build_dir / "secrets"
    if secrets.is_dir():
        shutil.copytree(secrets, _private_dir(target / "secrets"), dirs_exist_ok=True)
    files = sorted(p for p in target.rglob("*") if p.is_file())
    for path in files:
        path.chmod(0o600)
    images = image_set()
    manifest = {
        "environment": env.name,
        "created": stamp,
        "databases": databases,
        "sftp_data_root": data_root,
        "images": {name: images.ref(name) for name in IMAGE_NAMES},
        "files": {
            str(p.relative_to(target)): {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
            for p in files
        },
    }
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    (target / MANIFEST).chmod(0o600)
    log(f"backup complete: {len(files)} files, {sum(p.stat().st_size for p in files)} bytes")
    return target


def verify(backup_dir: Path) -> dict:
    """Return the manifest once every file it lists is present with its checksum."""
    manifest_path = backup_dir / MANIFEST
    if not manifest_path.is_file():
        raise CommandError(f"{backup_dir} is no backup: {MANIFEST} is missing")
    manifest = json.loads(manifest_path.read_text())
    for name, expected in manifest["files"].items():
        path = backup_dir / name
        if not path.is_file() or sha256_file(path) != expected["sha256"]:
            raise CommandError(f"{path} is missing or damaged; nothing was changed")
    for database in manifest["databases"]:
        if f"postgres-{database}.dump" not in manifest["files"]:
            raise CommandError(f"{backup_dir} has no dump of {database}; nothing was changed")
    return manifest


def _wait_healthy(container: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = subprocess.run(
            ["docker", "inspect", "-f", "{{.State.Health.Status}}", container],
            capture_output=True, text=True, check=False,
        ).stdout.strip()  # fmt: skip
        if state == "healthy":
            return
        time.sleep(2)
    raise CommandError(f"{container} did not become healthy within {timeout_s:.0f}s")


def restore(env: Environment, backup_dir: Path) -> Path:
    """Replace the environment's data by the backup's; return the safety backup taken first."""
    prefix = container_prefix(env)
    manifest = verify(backup_dir)
    if manifest["environment"] != env.name:
        log(f"note: restoring a backup of {manifest['environment']} into {env.name}")
    safety = backup(env, label="before-restore")
    postgres, sftp, mlflow = (f"{prefix}-{name}" for name in ("postgres", "sftp", "mlflow"))
    log(f"stopping {mlflow} while its data is replaced")
    subprocess.run(["docker", "stop", "--time", "30", mlflow], check=True, capture_output=True)
    try:
        for database in manifest["databases"]:
            with (backup_dir / f"postgres-{database}.dump").open("rb") as dump:
                _pg_tool(
                    postgres, database, "pg_restore",
                    "--clean", "--if-exists", "--single-transaction", "--exit-on-error",
                    stdin=dump,
                )  # fmt: skip
        (data_root,) = _lines(_docker_exec(sftp, SFTP_ROOT_SCRIPT))
        with (backup_dir / "sftp-data.tar").open("rb") as archive:
            _docker_exec(
                sftp,
                'find "$1" -mindepth 1 -delete && exec tar -C "$1" -xf -',
                data_root,
                stdin=archive,
            )
    finally:
        subprocess.run(["docker", "start", mlflow], check=True, capture_output=True)
    _wait_healthy(mlflow)
    log(f"restored {env.name} from {backup_dir}; the state before is in {safety}")
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


def latest_backup(env: Environment) -> Path:
    root = env.build_dir / "backups"
    candidates = sorted(
        (p for p in root.glob("*") if (p / MANIFEST).is_file() and "before-restore" not in p.name),
        key=lambda p: p.name,
    )
    if not candidates:
        raise CommandError(f"no backup in {root}; run `make backup ENV={env.name}` first")
    return candidates[-1]


def backup_command(env_name: str, label: str = "") -> None:
    print(backup(check_environment(env_name), label=label))


def pre_upgrade_command(env_name: str) -> None:
    """Before an upgrade: a backup on the Docker target; elsewhere, say what to do instead."""
    env = check_environment(env_name)
    try:
        container_prefix(env)
    except CommandError as exc:
        log(f"note: no automatic backup before this upgrade: {exc}")
        return
    print(backup(env, label="before-upgrade"))


def restore_command(env_name: str, source: str) -> None:
    env = check_environment(env_name)
    backup_dir = Path(source) if source else latest_backup(env)
    verify(backup_dir)
    confirm_restore(env, backup_dir)
    restore(env, backup_dir)
