"""A deployed Docker-target environment as backup and restore see it.

Names and paths come from build/<env>/stack.json, which the last deploy wrote (stack.py): the
role is the one place the naming rule lives. Without that file (an environment deployed by a
version before stack.json existed, which `make upgrade` must still back up first; or a deploy
that failed half-way, which `make destroy PURGE=1` must still list) the settings are resolved
the way the Ansible role does: the role's defaults (ansible/roles/mlops_docker/defaults/main.yml)
overridden by deploy/<env>/settings.yml, with their `{{ … }}` templates rendered; and the
containers are found by the labels the role puts on them, never by re-deriving their names.
Commands run inside the containers with `docker exec`; passwords are read there from the
mounted secret files, so none travels on a command line.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import jinja2
import yaml

from .environments import Environment
from .shell import CommandError
from .stack import LEGACY_SERVICE_NAMES, STACK_FILE, StackFileError, read_stack
from .versions import REPO_ROOT

ROLE_DEFAULTS = REPO_ROOT / "ansible" / "roles" / "mlops_docker" / "defaults" / "main.yml"
# Settings backup and restore need, in the order they may refer to each other.
RESOLVED_KEYS = ("mlops_docker_name_prefix", "mlops_docker_state_dir", "mlops_docker_backup_dir")
# Run in the postgres container: superuser password from its secret file, via the environment.
PG_SHELL = 'PGPASSWORD="$(cat "$POSTGRESQL_PASSWORD_FILE")" exec "$@"'
EXEC_TIMEOUT_S = 3600


def read_settings(env: Environment) -> dict:
    path = env.deploy_dir / "settings.yml"
    settings = yaml.safe_load(path.read_text()) or {}
    if not isinstance(settings, dict):
        raise CommandError(f"deploy/{env.name}/settings.yml must be a mapping of settings")
    return settings


def resolve_settings(env_name: str, settings: dict, defaults: dict) -> dict[str, str]:
    """The RESOLVED_KEYS of an environment: setting, else the role's default, rendered."""
    # Paths and names, not HTML: nothing to escape.
    templates = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)  # noqa: S701
    context: dict[str, str] = {"mlops_env": env_name}
    for key in RESOLVED_KEYS:
        raw = settings.get(key, defaults.get(key))
        if raw is None:
            raise CommandError(f"{key} has no default in {ROLE_DEFAULTS}; set it in settings.yml")
        try:
            context[key] = templates.from_string(str(raw)).render(context).strip()
        except jinja2.TemplateError as exc:
            raise CommandError(f"{key}={raw!r} cannot be resolved here: {exc}") from None
    return context


@dataclass(frozen=True)
class DockerEnv:
    """Names and paths of one Docker-target environment."""

    env: Environment
    prefix: str
    state_dir: Path
    backup_root: Path
    # Service -> container, from stack.json; empty when the environment was never deployed.
    containers: Mapping[str, str] = field(default_factory=dict)

    def container(self, service: str) -> str:
        try:
            return self.containers[service]
        except KeyError:
            raise CommandError(
                f"build/{self.env.name}/{STACK_FILE} names no container for {service}: run "
                f"`make deploy ENV={self.env.name}`"
            ) from None

    @property
    def migration_record(self) -> Path:
        """Which MLflow image last migrated the databases (ansible: tasks/containers.yml)."""
        return self.state_dir / "migrated-by-image"


def labelled_containers(env: Environment) -> dict[str, str]:
    """service -> container of the environment, by the role's labels (tasks/container.yml:
    io.mlops-kit.env=<env> and io.mlops-kit.env.service=<service>)."""
    result = subprocess.run(
        ["docker", "ps", "--all", "--filter", f"label=io.mlops-kit.env={env.name}",
         "--format", '{{.Label "io.mlops-kit.env.service"}}\t{{.Names}}'],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise CommandError(f"docker ps failed: {result.stderr.strip()[-500:]}")
    pairs = (line.split("\t", 1) for line in result.stdout.splitlines() if "\t" in line)
    return {LEGACY_SERVICE_NAMES.get(service, service): name for service, name in pairs if service}


def docker_env(
    env: Environment,
    deployed: bool = True,
    find_containers: Callable[[Environment], dict[str, str]] = labelled_containers,
) -> DockerEnv:
    """The environment as its last deploy made it (build/<env>/stack.json). Without that file:
    from its settings, with the containers that carry its labels (deployed=True: there must
    be some) or none (deployed=False: what `make destroy PURGE=1` lists)."""
    settings = read_settings(env)
    if settings.get("mlops_target") != "docker":
        raise CommandError(
            f"deploy/{env.name} has target {settings.get('mlops_target')!r}, not docker: this "
            "step is for the Docker target only"
        )
    if (env.build_dir / STACK_FILE).is_file():
        stack = read_stack(env.build_dir / STACK_FILE, env.name)
        if stack.target != "docker" or stack.state_dir is None or stack.backup_dir is None:
            raise CommandError(
                f"{stack.path} describes target {stack.target}, not a Docker deploy: run "
                f"`make deploy ENV={env.name}`"
            )
        prefix, state_dir, backup_root = stack.name_prefix, stack.state_dir, stack.backup_dir
        containers = {key: service.name for key, service in stack.services.items()}
    else:
        defaults = yaml.safe_load(ROLE_DEFAULTS.read_text()) or {}
        values = resolve_settings(env.name, settings, defaults)
        prefix = values["mlops_docker_name_prefix"]
        state_dir = Path(values["mlops_docker_state_dir"])
        backup_root = Path(values["mlops_docker_backup_dir"])
        containers = find_containers(env) if deployed else {}
        if deployed and not containers:
            raise StackFileError(
                f"build/{env.name}/{STACK_FILE} does not exist: run `make deploy ENV={env.name}`"
            )
    return _checked(env, DockerEnv(env, prefix, state_dir, backup_root, containers))


def _checked(env: Environment, denv: DockerEnv) -> DockerEnv:
    backup_root, state_dir = denv.backup_root, denv.state_dir
    if not backup_root.is_absolute():
        raise CommandError(
            f"mlops_docker_backup_dir={backup_root} must be an absolute path; set it in "
            f"deploy/{env.name}/settings.yml"
        )
    for purged in (env.build_dir.resolve(), state_dir.resolve()):
        if backup_root.resolve() == purged or purged in backup_root.resolve().parents:
            raise CommandError(
                f"mlops_docker_backup_dir={backup_root} lies inside {purged}, which "
                f"`make destroy PURGE=1` deletes; choose a directory outside it"
            )
    return denv


def purge_plan(denv: DockerEnv) -> tuple[list[str], list[str]]:
    """What `make destroy PURGE=1` deletes (existing things only) and what it keeps."""
    result = subprocess.run(
        ["docker", "volume", "ls", "--format", "{{.Name}}",
         "--filter", f"label=io.mlops-kit.env={denv.env.name}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    volumes = [f"Docker volume {name}" for name in sorted(result.stdout.split())]
    # A remote Docker host's volumes do not show on the local engine: name them generally.
    deleted = volumes or [f"the data volumes of {denv.prefix} on the Docker host"]
    deleted += [f"{denv.state_dir}/ (Docker host)", f"{denv.env.build_dir}/"]
    root = denv.backup_root
    count = sum(1 for p in root.iterdir() if p.is_dir()) if root.is_dir() else 0
    kept = [f"{count} backup(s) in {root}/ (mlops_docker_backup_dir)"]
    from .pgmajor import kept_volumes

    kept += [
        f"Docker volume {name} (kept by a PostgreSQL major upgrade; docker volume rm it)"
        for name in kept_volumes(denv.env.name)
    ]
    return deleted, kept


@dataclass(frozen=True)
class PodExec:
    """A container of a Kubernetes pod, reached with `kubectl exec` (kube_env.py)."""

    argv: tuple[str, ...]  # the command prefix, up to and including `--`
    name: str  # <pod>/<container>, for messages


# Where a command runs: a Docker container (its name) or a pod's container.
ExecTarget = str | PodExec


def exec_argv(target: ExecTarget) -> list[str]:
    return ["docker", "exec", "-i", target] if isinstance(target, str) else list(target.argv)


def target_name(target: ExecTarget) -> str:
    return target if isinstance(target, str) else target.name


def docker_exec(
    container: ExecTarget,
    script: str,
    *args: str,
    stdin: BinaryIO | None = None,
    stdout: BinaryIO | None = None,
    data: bytes | None = None,
) -> str:
    """Run ``sh -c script sh args...`` in a container (stdin from a file or `data`); return
    its stdout unless redirected."""
    command = [*exec_argv(container), "sh", "-c", script, "sh", *args]
    result = subprocess.run(
        command,
        input=data,
        stdin=None if data is not None else stdin if stdin is not None else subprocess.DEVNULL,
        stdout=stdout if stdout is not None else subprocess.PIPE,
        stderr=subprocess.PIPE,
        check=False,
        timeout=EXEC_TIMEOUT_S,
    )
    if result.returncode != 0:
        raise CommandError(
            f"`{script[:60]}` in {target_name(container)} exited {result.returncode}: "
            f"{result.stderr.decode(errors='replace').strip()[-1500:]}"
        )
    return (result.stdout or b"").decode() if stdout is None else ""


def pg_tool(
    container: ExecTarget,
    database: str,
    *command: str,
    stdin: BinaryIO | None = None,
    stdout: BinaryIO | None = None,
) -> str:
    """Run a PostgreSQL client tool as the superuser on the local socket (the image's PGHOST)."""
    connection = ("--username", "postgres", "--dbname", database)
    return docker_exec(container, PG_SHELL, *command, *connection, stdin=stdin, stdout=stdout)


def container_state(container: str) -> dict:
    """Docker's State of a container, or {} when there is none."""
    result = subprocess.run(
        ["docker", "inspect", "--format", "{{json .State}}", container],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return json.loads(result.stdout) if result.returncode == 0 else {}


def container_image(container: str) -> str:
    """The image reference a container was created from, or "" when there is no container."""
    result = subprocess.run(
        ["docker", "inspect", "--format", "{{.Config.Image}}", container],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return result.stdout.strip() if result.returncode == 0 else ""


def docker(*args: str) -> None:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise CommandError(f"docker {' '.join(args)} failed: {result.stderr.strip()[-500:]}")


def wait_healthy(container: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if container_state(container).get("Health", {}).get("Status") == "healthy":
            return
        time.sleep(2)
    raise CommandError(f"{container} did not become healthy within {timeout_s:.0f}s")


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]
