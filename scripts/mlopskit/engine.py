"""Make sure a Docker engine answers, installing and starting one where we may.

Debian/Ubuntu hosts without systemd (CI containers, fresh VMs) get ``docker.io`` from apt and a
background ``dockerd``; anywhere else we stop and say what to install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from .shell import CommandError, log, run, succeeds, taking_turns

DOCKER_SOCKET = Path("/var/run/docker.sock")
DOCKERD_LOG = Path("/var/log/mlops-kit-dockerd.log")
START_TIMEOUT_S = 60


def _is_debian_like() -> bool:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return False
    fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    ids = {fields.get("ID", "").strip('"')} | set(fields.get("ID_LIKE", "").strip('"').split())
    return bool(ids & {"debian", "ubuntu"})


def docker_answers() -> bool:
    return shutil.which("docker") is not None and succeeds(["docker", "info"])


# Another installer (unattended-upgrades, a second build) may hold dpkg's lock: wait for it.
APT_LOCK_WAIT = ["-o", "DPkg::Lock::Timeout=900"]
# Our own apt calls may run at once (`make test` builds the cluster binaries in the background
# while `make images` installs the engine); apt-get update does not wait for the package lists'
# lock, so they take turns on this one.
APT_TURNS = Path("/run/lock/mlops-kit-apt.lock")


def apt_get(*args: str, cwd: Path | None = None) -> None:
    """apt-get ARGS as root, one of our apt calls at a time, waiting for dpkg's lock."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with taking_turns(APT_TURNS, "another apt-get of this tool"):
        run(["apt-get", *APT_LOCK_WAIT, *args], env=env, cwd=cwd)


def apt_install(*packages: str, recommends: bool = True) -> None:
    """Install Debian packages as root (the package lists may be empty on a fresh machine)."""
    if os.geteuid() != 0 or not _is_debian_like():
        raise CommandError(
            f"{', '.join(packages)} missing: install it (Debian/Ubuntu: apt-get install "
            f"{' '.join(packages)}) or run as root on Debian/Ubuntu"
        )
    apt_get("update", "-qq")
    extra = [] if recommends else ["--no-install-recommends"]
    apt_get("install", "-y", "-qq", *extra, *packages)


def _start_daemon() -> None:
    log(f"starting dockerd in the background (log: {DOCKERD_LOG})")
    with DOCKERD_LOG.open("ab") as out:
        subprocess.Popen(
            ["dockerd"], stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if DOCKER_SOCKET.exists() and docker_answers():
            return
        time.sleep(1)
    raise CommandError(f"dockerd did not answer within {START_TIMEOUT_S}s; see {DOCKERD_LOG}")


def ensure_engine() -> None:
    """Return once ``docker info`` succeeds; install/start the engine on root Debian hosts."""
    if docker_answers():
        return
    if os.geteuid() != 0 or not _is_debian_like():
        raise CommandError(
            "no Docker engine answers `docker info`. Install Docker Engine "
            "(Debian/Ubuntu: `apt-get install docker.io`) and start it, or run as root on "
            "Debian/Ubuntu and this tool installs it for you."
        )
    if shutil.which("dockerd") is None:
        log("installing the Docker engine (docker.io) from the distribution's packages")
        apt_install("docker.io")
    if not docker_answers():
        _start_daemon()
