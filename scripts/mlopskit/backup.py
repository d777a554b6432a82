"""Backups of an environment: both databases, the SFTP data and the secrets, on every target.

Docker target: through `docker exec`; backups live in mlops_docker_backup_dir (default
/var/backups/mlops-kit/<prefix>/). Kubernetes and OpenShift: through the API (`kubectl exec`
and `kubectl get`, kube_env.py), into mlops_kubernetes_backup_dir on the controller (default
/var/backups/mlops-kit/<env>/). Both are outside everything `make destroy PURGE=1` deletes,
and both write one format, so a backup of one target restores on the other. Each backup is a
directory <UTC time>[-label]/ (mode 0700) with
  postgresql-<db>.dump pg_dump custom format of the tracking and the auth database
                       (postgres-<db>.dump in backups of format 2 and older),
  sftp/                the SFTP data (artifacts, DVC objects) as a tree, files hard-linked to
                       the previous backup when unchanged (snapshot.py),
  secrets/             the environment's generated secrets (Docker target),
  kubernetes-secrets.json  the release's generated Secrets (Kubernetes targets),
  people/              each person's generated key pair and password (build/<env>/people/),
  manifest.json        size and SHA-256 of every file, modes and times, image references.
It is written as <name>.partial and renamed when complete, so a directory with a manifest is a
whole backup. On Docker, MLflow is paused (`docker pause`) from the first dump to the last file,
so the databases and the artifacts show one point in time; clients' requests wait meanwhile.
On Kubernetes nothing pauses: each dump is a consistent snapshot, and the SFTP data, copied
after the dumps, holds every artifact they refer to.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from . import snapshot
from .docker_env import (
    PG_SHELL,
    ExecTarget,
    container_image,
    container_state,
    docker,
    docker_env,
    docker_exec,
    lines,
    pg_tool,
    read_settings,
)
from .environments import Environment, check_environment
from .kube_env import KUBE_TARGETS, kube_env
from .shell import CommandError, log
from .versions import IMAGE_NAMES, image_set

__all__ = ["PG_SHELL", "apply_retention", "backup", "latest_backup", "verify"]

PG_DATABASES_SCRIPT = 'printf "%s\\n" "$POSTGRESQL_APP_DB" "${POSTGRESQL_AUTH_DB:-}"'
SFTP_ROOT_SCRIPT = 'printf "%s\\n" "${SFTP_DATA_ROOT:-/data}"'
MANIFEST = "manifest.json"
# Kubernetes: the release's generated Secrets, name -> data as the API gives it (base64).
KUBE_SECRETS = "kubernetes-secrets.json"
PARTIAL = ".partial"
# The label of the backup `make upgrade` takes first (both targets, and across PostgreSQL
# majors); a failed schema migration names the newest one (rollback_advice).
BEFORE_UPGRADE = "before-upgrade"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def private_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o700)
    except OSError as exc:
        raise CommandError(
            f"cannot create the backup directory {path} ({exc.strerror}); set "
            "mlops_docker_backup_dir in deploy/<env>/settings.yml to a directory you may write"
        ) from None
    return path


def backups(root: Path) -> list[Path]:
    """Complete backups under root, oldest first (names start with their UTC time)."""
    if not root.is_dir():
        return []
    return sorted(
        (p for p in root.iterdir() if (p / MANIFEST).is_file() and not p.name.endswith(PARTIAL)),
        key=lambda p: p.name,
    )


def _new_name(root: Path, label: str) -> str:
    while True:
        name = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + (f"-{label}" if label else "")
        if not (root / name).exists() and not (root / f"{name}{PARTIAL}").exists():
            return name
        time.sleep(1)


# A database's dump file: the first prefix is written; backups of format 2 and older have the
# second (before the service was called postgresql everywhere), and restore still reads them.
DUMP_PREFIXES = ("postgresql-", "postgres-")


def dump_file(files: dict, database: str) -> str | None:
    """The name of the database's dump among a manifest's files, None when it has none."""
    names = (f"{prefix}{database}.dump" for prefix in DUMP_PREFIXES)
    return next((name for name in names if name in files), None)


def _dump_databases(postgresql: ExecTarget, target: Path) -> list[str]:
    databases = lines(docker_exec(postgresql, PG_DATABASES_SCRIPT))
    for database in databases:
        path = target / f"{DUMP_PREFIXES[0]}{database}.dump"
        with open(path, "xb", opener=snapshot.private_opener) as out:
            pg_tool(postgresql, database, "pg_dump", "--format=custom", stdout=out)
    return databases


# What a deploy generated on the controller and a restore must bring back: the secrets, and
# the people's passwords and keys (so that everyone's connection.env keeps working).
CONTROLLER_TREES = ("secrets", "people")


def _copy_secrets(env: Environment, target: Path) -> dict:
    files = {}
    for tree in CONTROLLER_TREES:
        source = env.build_dir / tree
        if not source.is_dir():
            continue
        shutil.copytree(source, private_dir(target / tree), dirs_exist_ok=True)
        for path in sorted(p for p in (target / tree).rglob("*") if p.is_file()):
            path.chmod(0o600)
            key = str(path.relative_to(target))
            files[key] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
        for path in (target / tree).rglob("*"):
            if path.is_dir():
                path.chmod(0o700)
    return files


class _Paused:
    """`docker pause` MLflow for the block (if it runs), and always unpause."""

    def __init__(self, container: str) -> None:
        self.container = container
        self.paused_at = 0.0

    def __enter__(self) -> _Paused:
        if container_state(self.container).get("Status") == "running":
            docker("pause", self.container)
            self.paused_at = time.monotonic()
        else:
            log(f"note: {self.container} is not running; nothing writes during the backup")
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.paused_at:
            docker("unpause", self.container)
            log(f"MLflow was paused for {time.monotonic() - self.paused_at:.1f}s")


@dataclass(frozen=True)
class Source:
    """Where a backup reads one environment from: Docker containers or Kubernetes pods."""

    target: str
    root: Path
    postgresql: ExecTarget
    sftp: ExecTarget
    quiesce: Callable[[], AbstractContextManager[object]]
    images: Callable[[], dict[str, str]]
    # Kubernetes: the chart's generated Secrets (name -> data), kept in KUBE_SECRETS.
    kube_secrets: Callable[[], dict[str, dict[str, str]]] | None = None


def docker_source(env: Environment) -> Source:
    denv = docker_env(env)
    postgresql, sftp = denv.container("postgresql"), denv.container("sftp")
    for container in (postgresql, sftp):
        if container_state(container).get("Status") != "running":
            raise CommandError(
                f"{container} is not running; deploy first: make deploy ENV={env.name}"
            )

    def images() -> dict[str, str]:
        # What runs (an older MLflow before `make upgrade`), else what versions.env names.
        pinned = image_set()
        return {
            image: container_image(denv.containers.get(image, "")) or pinned.ref(image)
            for image in IMAGE_NAMES
        }

    return Source(
        "docker", denv.backup_root, postgresql, sftp,
        lambda: _Paused(denv.container("mlflow")), images,
    )  # fmt: skip


def kube_source(env: Environment) -> Source:
    """Through the API: pg_dump and tar in the pods (kubectl exec), Secrets with kubectl get.
    Nothing is paused: the dumps come first, so every artifact they refer to is in the copy
    of the SFTP data taken after them (docs/operations.md#kubernetes)."""
    kenv = kube_env(env)
    return Source(
        kenv.stack.target, kenv.backup_root,
        kenv.exec_target("postgresql"), kenv.exec_target("sftp"),
        contextlib.nullcontext,
        lambda: {image: kenv.image(image) for image in IMAGE_NAMES},
        kenv.secrets,
    )  # fmt: skip


def backup_root(env: Environment) -> Path:
    """Where the environment's backups are, from its last deploy."""
    if read_settings(env).get("mlops_target") in KUBE_TARGETS:
        return kube_env(env).backup_root
    return docker_env(env).backup_root


def source_of(env: Environment) -> Source:
    target = read_settings(env).get("mlops_target")
    return kube_source(env) if target in KUBE_TARGETS else docker_source(env)


def _write_private_json(path: Path, document: object) -> dict:
    with open(path, "x", opener=snapshot.private_opener) as out:
        json.dump(document, out, indent=1)
        out.write("\n")
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def backup(env: Environment, *, label: str = "", keep: int = 0) -> Path:
    """Take a backup; with keep > 0, delete the oldest so that `keep` remain. Return its path."""
    source = source_of(env)
    root = private_dir(source.root)
    history = backups(root)
    previous_dir = history[-1] if history else None
    previous = json.loads((previous_dir / MANIFEST).read_text())["files"] if previous_dir else {}
    name = _new_name(root, label)
    partial = private_dir(root / f"{name}{PARTIAL}")
    log(f"backing up {env.name} into {root / name}")
    started = time.monotonic()
    try:
        (data_root,) = lines(docker_exec(source.sftp, SFTP_ROOT_SCRIPT))
        with source.quiesce():
            databases = _dump_databases(source.postgresql, partial)
            files, dirs, links, copied = snapshot.copy_out(
                source.sftp, data_root, partial, previous, previous_dir
            )
        for path in sorted(partial.glob(f"{DUMP_PREFIXES[0]}*.dump")):
            files[path.name] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
        files.update(_copy_secrets(env, partial))
        if source.kube_secrets is not None:
            files[KUBE_SECRETS] = _write_private_json(partial / KUBE_SECRETS, source.kube_secrets())
        manifest = {
            "format": 3,
            "environment": env.name,
            "target": source.target,
            "created": name,
            "databases": databases,
            "sftp_data_root": data_root,
            "images": source.images(),
            "files": files,
            "dirs": dirs,
            "links": links,
        }
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        (partial / MANIFEST).chmod(0o600)
        partial.rename(root / name)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    total = sum(entry["bytes"] for entry in files.values())
    log(
        f"backup complete in {time.monotonic() - started:.1f}s: {len(files)} files, {total} bytes "
        f"({copied} bytes of SFTP data copied, the rest hard-linked to the previous backup)"
    )
    if keep:
        apply_retention(root, keep)
    return root / name


def apply_retention(root: Path, keep: int) -> list[Path]:
    """Delete the oldest complete backups so that `keep` remain; return what was deleted."""
    if keep < 1:
        raise CommandError(f"KEEP={keep} must be 1 or more (the number of backups to keep)")
    doomed = backups(root)[:-keep]
    for path in doomed:
        log(f"KEEP={keep}: deleting the old backup {path}")
        snapshot.remove_tree(path)
    return doomed


def verify(backup_dir: Path) -> dict:
    """Return the manifest once every file it lists is present with its checksum."""
    manifest_path = backup_dir / MANIFEST
    if not manifest_path.is_file():
        raise CommandError(f"{backup_dir} is no backup: {MANIFEST} is missing")
    manifest = json.loads(manifest_path.read_text())
    for name, expected in manifest["files"].items():
        path = backup_dir / snapshot.safe_relative(name)
        if not path.is_file() or sha256_file(path) != expected["sha256"]:
            raise CommandError(f"{path} is missing or damaged; nothing was changed")
    for database in manifest["databases"]:
        if dump_file(manifest["files"], database) is None:
            raise CommandError(f"{backup_dir} has no dump of {database}; nothing was changed")
    return manifest


def rollback_advice(root: Path, env_name: str) -> str:
    """The way back after a failed schema migration, as both deploy roles report it: the newest
    complete backup that `make upgrade` took first, and the command that restores it."""
    taken = [p for p in backups(root) if p.name.endswith(f"-{BEFORE_UPGRADE}")]
    if not taken:
        return f"No backup taken before an upgrade is in {root}."
    return (
        f"The newest backup taken before an upgrade is {taken[-1]}; to go back to it, run "
        f"`make restore ENV={env_name} FROM={taken[-1]} YES=1` with the images of the MLflow "
        'release that took it (docs/operations.md, "Rollback").'
    )


def rollback_advice_command(env_name: str, root: str) -> None:
    print(rollback_advice(Path(root), env_name))


def latest_backup(root: Path, env_name: str) -> Path:
    """The newest backup in root that is not a safety copy taken by a restore."""
    candidates = [p for p in backups(root) if "before-restore" not in p.name]
    if not candidates:
        raise CommandError(f"no backup in {root}; run `make backup ENV={env_name}` first")
    return candidates[-1]


def parse_keep(raw: str) -> int:
    if not raw:
        return 0
    if not raw.isdigit() or int(raw) < 1:
        raise CommandError(f"KEEP={raw!r} must be a whole number of 1 or more; nothing was done")
    return int(raw)


def backup_command(env_name: str, keep: str = "") -> None:
    count = parse_keep(keep)
    print(backup(check_environment(env_name), keep=count))


def pre_upgrade_command(env_name: str) -> None:
    """Before an upgrade: a backup (on Docker, unless the PostgreSQL major changes, which
    takes its own backup later with MLflow stopped)."""
    env = check_environment(env_name)
    if read_settings(env).get("mlops_target") in KUBE_TARGETS:
        print(backup(env, label=BEFORE_UPGRADE))
        return
    from .pgmajor import pre_upgrade_check

    # Across PostgreSQL majors the backup comes later, with MLflow stopped (pgmajor.move).
    if not pre_upgrade_check(env):
        print(backup(env, label=BEFORE_UPGRADE))
