"""What a deploy made: build/<env>/stack.json, read by every consumer.

The Ansible roles write the file at the end of each deploy (mlops_docker: vars/main.yml
`mlops_docker_stack`; mlops_kubernetes: tasks/connection.yml). It names the deployed objects
(containers, volumes, network, or namespace, release and Services), their addresses and ports,
and the controller-side paths of the secret files (never their content). Backup, restore, the
smoke suite, the e2e tests and the benchmarks read names from here instead of re-deriving the
roles' naming rules.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .environments import BUILD_ROOT
from .shell import CommandError

# The version of the file the roles write (mlops_docker_stack_version,
# mlops_kubernetes_stack_version); this module also reads the older ones it lists.
STACK_VERSION = 2
# Version 1 called the PostgreSQL service `postgres`: old name -> name now (issue 11).
LEGACY_SERVICE_NAMES = {"postgres": "postgresql"}
READABLE_VERSIONS = {1: LEGACY_SERVICE_NAMES, STACK_VERSION: {}}
STACK_FILE = "stack.json"
TARGETS = frozenset({"docker", "kubernetes", "openshift"})


class StackFileError(CommandError):
    """build/<env>/stack.json is missing, unreadable or from another version."""


@dataclass(frozen=True)
class Service:
    """One service of the stack: a container (docker) or a Kubernetes Service."""

    name: str
    port: int
    image: str = ""
    alias: str = ""
    bind_address: str = ""
    published_port: int | None = None
    volumes: tuple[str, ...] = ()
    # Kubernetes port-forward (access port-forward): local port, its pid and log files.
    local_port: int | None = None
    pid_file: Path | None = None
    log_file: Path | None = None


@dataclass(frozen=True)
class Controller:
    """Files the deploy keeps on the controller (secrets stay there, mode 0600)."""

    build_dir: Path
    admin_env: Path
    secrets_dir: Path
    people_dir: Path
    known_hosts: Path


@dataclass(frozen=True)
class Stack:
    target: str
    environment: str
    services: Mapping[str, Service]
    controller: Controller
    path: Path
    # Docker target.
    name_prefix: str = ""
    network: str = ""
    state_dir: Path | None = None
    backup_dir: Path | None = None
    # Kubernetes and OpenShift targets.
    namespace: str = ""
    release: str = ""
    access: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def service(self, key: str) -> Service:
        try:
            return self.services[key]
        except KeyError:
            raise StackFileError(
                f"{self.path} names no service {key!r} (it has {', '.join(self.services)})"
            ) from None

    def container(self, key: str) -> str:
        """Docker target: the container of a service."""
        if self.target != "docker":
            raise StackFileError(f"{self.path}: target {self.target} has no containers")
        return self.service(key).name

    @property
    def volumes(self) -> list[str]:
        return [v for s in self.services.values() for v in s.volumes]


def stack_path(env: str, build_root: Path = BUILD_ROOT) -> Path:
    return build_root / env / STACK_FILE


def _optional_path(value: Any) -> Path | None:
    return Path(value) if value else None


def _optional_int(value: Any) -> int | None:
    return int(value) if value not in (None, "") else None


def _service(key: str, raw: Mapping[str, Any], where: Path) -> Service:
    name = raw.get("container") or raw.get("service")
    if not name:
        raise StackFileError(f"{where}: service {key!r} has neither a container nor a service")
    return Service(
        name=str(name),
        port=int(raw["port"]),
        image=str(raw.get("image") or ""),
        alias=str(raw.get("alias") or ""),
        bind_address=str(raw.get("bind_address") or ""),
        published_port=_optional_int(raw.get("published_port")),
        volumes=tuple(str(v) for v in raw.get("volumes") or ()),
        local_port=_optional_int(raw.get("local_port")),
        pid_file=_optional_path(raw.get("pid_file")),
        log_file=_optional_path(raw.get("log_file")),
    )


def parse_stack(document: Mapping[str, Any], path: Path, env: str = "") -> Stack:
    """A Stack from the JSON document; StackFileError names what is wrong."""
    env = env or path.parent.name
    version = document.get("version")
    readable = {str(v): names for v, names in READABLE_VERSIONS.items()}
    renamed = readable.get(str(version))
    if renamed is None:
        raise StackFileError(
            f"{path} has version {version!r}, this checkout reads versions "
            f"{', '.join(readable)}: run `make deploy ENV={env}` to write it again"
        )
    target = document.get("target")
    if target not in TARGETS:
        raise StackFileError(f"{path}: target {target!r} is not one of {sorted(TARGETS)}")
    try:
        controller = document["controller"]
        services = {
            renamed.get(key, key): _service(renamed.get(key, key), raw, path)
            for key, raw in (document["services"] or {}).items()
        }
        known = {
            "version", "target", "environment", "services", "controller", "name_prefix",
            "network", "state_dir", "backup_dir", "namespace", "release", "access",
        }  # fmt: skip
        return Stack(
            target=str(target),
            environment=str(document["environment"]),
            services=services,
            controller=Controller(
                build_dir=Path(controller["build_dir"]),
                admin_env=Path(controller["admin_env"]),
                secrets_dir=Path(controller["secrets_dir"]),
                people_dir=Path(controller["people_dir"]),
                known_hosts=Path(controller["known_hosts"]),
            ),
            path=path,
            name_prefix=str(document.get("name_prefix") or ""),
            network=str(document.get("network") or ""),
            state_dir=_optional_path(document.get("state_dir")),
            backup_dir=_optional_path(document.get("backup_dir")),
            namespace=str(document.get("namespace") or ""),
            release=str(document.get("release") or ""),
            access=str(document.get("access") or ""),
            extra={k: v for k, v in document.items() if k not in known},
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise StackFileError(
            f"{path} is incomplete ({type(exc).__name__}: {exc}): run `make deploy ENV={env}` "
            "to write it again"
        ) from None


def load_stack(env: str, build_root: Path = BUILD_ROOT) -> Stack:
    """The Stack the last deploy of <env> wrote; StackFileError when there is none."""
    return read_stack(stack_path(env, build_root), env)


def read_stack(path: Path, env: str) -> Stack:
    """The Stack in `path`, the stack.json of environment <env>."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise StackFileError(
            f"build/{env}/stack.json does not exist: run `make deploy ENV={env}`"
        ) from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StackFileError(f"{path} is not JSON ({exc}): run `make deploy ENV={env}`") from None
    if not isinstance(document, dict):
        raise StackFileError(f"{path} must hold a JSON object: run `make deploy ENV={env}`")
    return parse_stack(document, path, env)
