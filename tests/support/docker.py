"""Real Docker for tests: hardened containers under a random UID, and cleanup that always runs."""

from __future__ import annotations

import json
import random
import secrets
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# The flags OpenShift's restricted-v2 SCC imposes, applied on Docker too.
# Size of every sandbox container's /tmp.
TMP_MIB = 256
HARDENING = (
    "--read-only",
    "--cap-drop", "ALL",
    "--security-opt", "no-new-privileges",
    "--tmpfs", f"/tmp:rw,nosuid,nodev,size={TMP_MIB}m",
)  # fmt: skip


def docker(
    *args: str, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def random_uid() -> int:
    """A UID like the ones OpenShift assigns from a namespace's range."""
    return random.randint(1_000_000_000, 2_000_000_000)  # noqa: S311 - not a secret


def new_secret(length: int = 24) -> str:
    # Punctuation on purpose: URIs, ini files and shells must cope with it.
    return secrets.token_urlsafe(length) + "%'@:/"


@dataclass
class Container:
    name: str
    uid: int

    def inspect(self) -> dict:
        return json.loads(docker("inspect", self.name).stdout)[0]

    def health(self) -> str:
        state = self.inspect()["State"]
        return state.get("Health", {}).get("Status", state["Status"])

    def wait_healthy(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.inspect()["State"]
            if state.get("Health", {}).get("Status") == "healthy":
                return
            if state["Status"] == "exited":
                raise AssertionError(f"{self.name} exited {state['ExitCode']}:\n{self.log_tail()}")
            time.sleep(1)
        raise AssertionError(f"{self.name} not healthy after {timeout}s:\n{self.log_tail()}")

    def logs(self) -> str:
        """Everything the container wrote: a check that a line is (or a secret is not) there
        must see all of it."""
        result = docker("logs", self.name, check=False)
        return result.stdout + result.stderr

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the logs, for a failure message."""
        return self.logs()[-chars:]

    def exec(self, *command: str) -> str:
        return docker("exec", self.name, *command).stdout

    def host_address(self, container_port: int) -> tuple[str, int]:
        """The host address and port a published port is bound to."""
        out = docker("port", self.name, f"{container_port}/tcp").stdout.splitlines()[0]
        address, port = out.rsplit(":", 1)
        return address.strip("[]"), int(port)

    def host_port(self, container_port: int) -> int:
        return self.host_address(container_port)[1]

    def restart(self) -> None:
        docker("restart", "--time", "30", self.name)


@dataclass
class Sandbox:
    """Names everything it creates with one prefix, and removes everything with that prefix
    before it starts and at the end."""

    prefix: str
    network: str = ""

    def __post_init__(self) -> None:
        self.network = f"{self.prefix}-net"
        # What an interrupted run under a fixed prefix left: its volumes would carry a store's
        # stale state into this run, and its network would refuse to be created again.
        self._remove_all(check=True)
        docker("network", "create", self.network)

    def _remove_all(self, *, check: bool) -> None:
        start = f"{self.prefix}-"
        found = docker("ps", "--all", "--format", "{{.Names}}").stdout.split()
        if containers := [name for name in found if name.startswith(start)]:
            docker("rm", "--force", "--volumes", *containers, check=check)
        found = docker("volume", "ls", "--format", "{{.Name}}").stdout.split()
        if volumes := [name for name in found if name.startswith(start)]:
            docker("volume", "rm", "--force", *volumes, check=check)
        docker("network", "rm", self.network, check=False)

    def volume(self, name: str, *options: str) -> str:
        """A named volume; ``options`` go to `docker volume create` (e.g. a sized tmpfs)."""
        full = f"{self.prefix}-{name}"
        docker("volume", "create", *options, full)
        return full

    def run(
        self,
        name: str,
        image: str,
        *,
        env: dict[str, str] | None = None,
        mounts: Sequence[str] = (),
        publish: Sequence[int] = (),
        uid: int | None = None,
        command: Sequence[str] = (),
        hardened: bool = True,
        aliases: Sequence[str] = (),
        publish_address: str = "127.0.0.1",
    ) -> Container:
        """Start ``name``, reachable on the sandbox network as ``name`` and ``aliases``, and
        its ``publish`` ports on random host ports of ``publish_address``."""
        uid = uid if uid is not None else random_uid()
        full = f"{self.prefix}-{name}"
        args = ["run", "--detach", "--name", full, "--network", self.network]
        for alias in (name, *aliases):
            args += ["--network-alias", alias]
        args += ["--user", f"{uid}:0"]
        if hardened:
            args += HARDENING
        for key, value in (env or {}).items():
            args += ["--env", f"{key}={value}"]
        for mount in mounts:
            args += ["--volume", mount]
        for port in publish:
            args += ["--publish", f"{publish_address}::{port}"]
        docker(*args, image, *command)
        return Container(full, uid)

    def run_to_exit(
        self,
        image: str,
        *,
        env: dict[str, str],
        command: Sequence[str] = (),
        mounts: Sequence[str] = (),
        tmpfs: Sequence[str] = (),
        entrypoint: str | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """Run a hardened one-off container in the foreground and return its result."""
        args = ["run", "--rm", "--network", self.network, "--user", f"{random_uid()}:0"]
        args += HARDENING
        for mount in mounts:
            args += ["--volume", mount]
        for path in tmpfs:
            args += ["--tmpfs", f"{path}:rw,mode=0775"]
        if entrypoint:
            args += ["--entrypoint", entrypoint]
        for key, value in env.items():
            args += ["--env", f"{key}={value}"]
        return docker(*args, image, *command, check=False, timeout=timeout)

    def destroy(self) -> None:
        self._remove_all(check=False)


def secret_dir(path: Path, values: dict[str, str]) -> Path:
    """Write one file per secret, readable by the container's arbitrary UID."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)
    for name, value in values.items():
        (path / name).write_text(value + "\n")
        (path / name).chmod(0o644)
    return path


def assert_config_error(result: subprocess.CompletedProcess[str], message: str) -> None:
    """The contract for bad input: exit 78 at once, one line `error: ...` naming the problem."""
    assert result.returncode == 78, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert message in lines[0], lines[0]
