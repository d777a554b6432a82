"""Deploy environments (deploy/<env>/) and what a deploy leaves behind (build/<env>/).

`mlopskit stack check` fails early, naming the fix, when deploy/<env>/ is missing or
incomplete; `stack info` prints the connection settings with secrets masked; `stack
confirm-purge` guards `make destroy PURGE=1`. A deploy writes build/<env>/admin.env (the
MLflow admin: the platform engineer's only) and build/<env>/people/<name>/connection.env (each
person's own).
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from .shell import CommandError
from .versions import REPO_ROOT

DEPLOY_ROOT = REPO_ROOT / "deploy"
BUILD_ROOT = REPO_ROOT / "build"
REQUIRED_FILES = ("inventory.yml", "settings.yml")
# The variables every target writes into each person's connection.env (the fixed interface).
CONNECTION_KEYS = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "DVC_REMOTE_URL",
    "SFTP_HOST",
    "SFTP_PORT",
    "SFTP_USERNAME",
    "SFTP_PRIVATE_KEY",
    "SFTP_KNOWN_HOSTS",
)
SECRET_KEYS = frozenset({"MLFLOW_TRACKING_PASSWORD"})
ENV_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")


@dataclass(frozen=True)
class Environment:
    name: str

    @property
    def deploy_dir(self) -> Path:
        return DEPLOY_ROOT / self.name

    @property
    def build_dir(self) -> Path:
        return BUILD_ROOT / self.name

    @property
    def admin_file(self) -> Path:
        return self.build_dir / "admin.env"

    @property
    def people_dir(self) -> Path:
        return self.build_dir / "people"

    def connection_file(self, person: str) -> Path:
        return self.people_dir / person / "connection.env"

    def people_with_connections(self) -> list[str]:
        if not self.people_dir.is_dir():
            return []
        return sorted(p.parent.name for p in self.people_dir.glob("*/connection.env"))


def known_environments(root: Path = DEPLOY_ROOT) -> list[str]:
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "settings.yml").is_file())


def check_environment(name: str, root: Path = DEPLOY_ROOT) -> Environment:
    """Return the environment, or raise CommandError naming what is missing and the fix."""
    if not ENV_NAME.match(name):
        raise CommandError(
            f"ENV={name!r} is not a valid environment name: use lower-case letters, digits "
            "and dashes (e.g. ENV=local)"
        )
    env_dir = root / name
    known = ", ".join(known_environments(root)) or "none"
    if not env_dir.is_dir():
        raise CommandError(
            f"deploy/{name}/ does not exist (ENV={name}); known environments: {known}. "
            "Create it with inventory.yml and settings.yml, e.g. "
            f"`cp -r deploy/local deploy/{name}`, and give it its own name prefix and ports"
        )
    for file_name in REQUIRED_FILES:
        if not (env_dir / file_name).is_file():
            raise CommandError(
                f"deploy/{name}/{file_name} is missing; copy it from deploy/local/ and adapt it"
            )
    return Environment(name)


def parse_connection_env(text: str) -> dict[str, str]:
    """Parse `export KEY='value'` / `KEY=value` lines (shell quoting) into a dict."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Z_][A-Z0-9_]*", key):
            raise ValueError(f"not a KEY=value line: {raw!r}")
        parts = shlex.split(value) if value else [""]
        values[key] = parts[0] if parts else ""
    return values


def read_connection(env: Environment, person: str) -> dict[str, str]:
    """The connection.env of one person."""
    path = env.connection_file(person)
    if not path.is_file():
        listed = ", ".join(env.people_with_connections()) or "nobody yet"
        raise CommandError(
            f"{path.relative_to(REPO_ROOT)} does not exist (people with connection files: "
            f"{listed}). Add the person with `make add-user ENV={env.name} NAME={person}`"
        )
    values = parse_connection_env(path.read_text())
    missing = [key for key in CONNECTION_KEYS if key not in values]
    if missing:
        raise CommandError(f"{path} lacks {', '.join(missing)}; run `make deploy ENV={env.name}`")
    return values


def mask(value: str) -> str:
    return "*" * 8 if value else "(empty)"


def read_admin(env: Environment) -> dict[str, str]:
    if not env.admin_file.is_file():
        raise CommandError(
            f"{env.admin_file.relative_to(REPO_ROOT)} does not exist: deploy first with "
            f"`make deploy ENV={env.name}`"
        )
    return parse_connection_env(env.admin_file.read_text())


def render_info(env: Environment, admin: dict[str, str], people: dict[str, dict[str, str]]) -> str:
    """What `make info` prints: where things are, who has which file; no secret."""
    lines = [f"Environment {env.name}: MLflow UI at {admin['MLFLOW_TRACKING_URI']}/"]
    lines.append(
        f"Admin (platform engineer only, never hand it out): user "
        f"{admin['MLFLOW_TRACKING_USERNAME']}, password {mask(admin['MLFLOW_TRACKING_PASSWORD'])}"
        f", in build/{env.name}/admin.env"
    )
    if not people:
        lines.append(
            f"Nobody has an account yet: `make add-user ENV={env.name} NAME=<name> "
            "[ROLE=reader|editor|admin] [DVC=read|write|none] [PUBKEY=path.pub]`"
        )
    for name, values in sorted(people.items()):
        lines.append(f"Person {name}: hand over build/{env.name}/people/{name}/ (their own only)")
        width = max(len(key) for key in CONNECTION_KEYS)
        for key in CONNECTION_KEYS:
            shown = mask(values.get(key, "")) if key in SECRET_KEYS else values.get(key, "")
            lines.append(f"  {key:<{width}} = {shown}")
    lines.append(
        f"A person uses theirs: . build/{env.name}/people/<name>/connection.env   "
        "(then the stock `mlflow` and `dvc` clients work)"
    )
    return "\n".join(lines)


def confirm_purge(
    env: Environment, deleted: list[str] | None = None, kept: list[str] | None = None
) -> None:
    """Ask before deleting all data, listing what goes and what stays; YES=1 answers for
    non-interactive runs."""
    if os.environ.get("YES", "") in {"1", "true", "yes"}:
        return
    if deleted is None:
        what = (
            "its volumes (runs, models, artifacts, DVC objects), the host-side secrets "
            f"and build/{env.name}/"
        )
    else:
        what = "; ".join(deleted) or "nothing is left to delete"
    warning = f"PURGE=1 deletes ALL data of environment {env.name}: {what}"
    if kept:
        warning += f". It keeps {'; '.join(kept)}"
    if not sys.stdin.isatty():
        raise CommandError(f"{warning}. Nobody can confirm here: rerun with YES=1 to proceed")
    print(f"{warning}.", file=sys.stderr)
    answer = input(f"Type the environment name ({env.name}) to confirm: ").strip()
    if answer != env.name:
        raise CommandError("not confirmed; nothing was removed")
