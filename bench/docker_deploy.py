"""The Docker target under `make bench`: deploy wall times, which containers a deploy re-created,
and what the stack's containers use (memory, CPU time).

Usage: .venv/bin/python bench/docker_deploy.py   (cold and warm deploy of a throw-away env)

The cold deploy runs a throw-away environment `bench-cold` (prefix mlops-bench-cold, ports
18700/18722, settings in a scratch directory) and purges it (`make bench` measures deploy/bench/,
another environment: this purge never touches it). "Cold" means no containers, volumes or secrets
of the environment exist; the images are already built (`make images` is timed by the image
build, not here).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "scripts"))
from mlopskit.stack import Stack, load_stack  # noqa: E402

COLD_ENV = "bench-cold"
COLD_SETTINGS = """mlops_target: docker
mlops_docker_name_prefix: mlops-bench-cold
mlops_docker_bind_address: 127.0.0.1
mlops_docker_mlflow_port: 18700
mlops_docker_sftp_port: 18722
"""
UNITS = {"B": 1, "kB": 1000, "KiB": 1024, "MB": 1000**2, "MiB": 1024**2, "GB": 1000**3,
         "GiB": 1024**3}  # fmt: skip
RECAP = re.compile(r"^\S+\s*:\s*ok=\d+\s+changed=(\d+)", re.MULTILINE)


@dataclass(frozen=True)
class Played:
    """A playbook run: wall time and the `changed` count of its recap."""

    seconds: float
    changed: int


def changed_count(output: str) -> int:
    """The sum of `changed=N` over the hosts of a playbook's recap."""
    counts = RECAP.findall(output)
    if not counts:
        raise ValueError("no PLAY RECAP with changed=N in the playbook's output")
    return sum(int(c) for c in counts)


def playbook(config: Path, name: str, *extra: str, env_name: str = COLD_ENV) -> Played:
    """Run ansible/<name> on the environment whose inventory and settings are in ``config``."""
    args = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        "-i", str(config / "inventory.yml"),
        "-e", f"@{config / 'settings.yml'}",
        "-e", f"mlops_env={env_name}",
        *extra,
        str(REPO_ROOT / "ansible" / name),
    ]  # fmt: skip
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible" / "ansible.cfg")}
    started = time.monotonic()
    result = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{name} of {env_name} failed:\n{result.stdout[-4000:]}")
    return Played(time.monotonic() - started, changed_count(result.stdout))


def _docker(*args: str) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout


def container_ids(stack: Stack) -> dict[str, str]:
    """Service → the ID of its running container (a re-created container has a new one)."""
    return {key: _docker("inspect", "-f", "{{.Id}}", s.name).strip()
            for key, s in stack.services.items()}  # fmt: skip


def recreated(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """The services whose container changed between two `container_ids`."""
    return sorted(key for key in after if before.get(key) != after[key])


def memory_bytes(container: str) -> int:
    out = _docker("stats", "--no-stream", "--format", "{{.MemUsage}}", container)
    return parse_memory(out)


def parse_memory(text: str) -> int:
    """The used part of `docker stats`' MemUsage ("123.4MiB / 1GiB") in bytes."""
    match = re.match(r"([\d.]+)\s*([kKMG]?i?B)", text.strip())
    if not match:
        raise ValueError(f"cannot parse docker stats' memory {text!r}")
    return int(float(match.group(1)) * UNITS[match.group(2)])


def cpu_seconds(container: str) -> float:
    """CPU time the container's processes used so far, from its cgroup (v1 cpuacct or v2)."""
    cid = _docker("inspect", "-f", "{{.Id}}", container).strip()
    v1 = Path(f"/sys/fs/cgroup/cpuacct/docker/{cid}/cpuacct.usage")
    if v1.exists():
        return int(v1.read_text()) / 1e9
    for v2 in (
        Path(f"/sys/fs/cgroup/docker/{cid}/cpu.stat"),
        Path(f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/cpu.stat"),
    ):
        if v2.exists():
            usage = re.search(r"^usage_usec (\d+)", v2.read_text(), re.MULTILINE)
            if usage:
                return int(usage.group(1)) / 1e6
    raise RuntimeError(f"no cgroup CPU accounting found for container {container}")


def cold_deploy() -> tuple[Played, Played, dict[str, int]]:
    """Deploy the throw-away environment from nothing, again (warm), read its memory, purge it.
    Returns the two runs and each service's memory right after the warm deploy."""
    with tempfile.TemporaryDirectory(prefix="mlops-bench-") as scratch:
        config = Path(scratch)
        inventory = (REPO_ROOT / "deploy" / "local" / "inventory.yml").read_text()
        (config / "inventory.yml").write_text(inventory)
        (config / "settings.yml").write_text(COLD_SETTINGS)
        playbook(config, "destroy.yml", "-e", "mlops_purge=true")
        try:
            cold = playbook(config, "deploy.yml")
            warm = playbook(config, "deploy.yml")
            # The containers the deploy made (build/bench-cold/stack.json), read before the purge.
            stack = load_stack(COLD_ENV)
            memory = {key: memory_bytes(service.name) for key, service in stack.services.items()}
        finally:
            playbook(config, "destroy.yml", "-e", "mlops_purge=true")
    return cold, warm, memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    cold, warm, memory = cold_deploy()
    mib = 1024**2
    print(f"cold deploy (images present, no state): {cold.seconds:.1f} s, changed={cold.changed}")
    print(f"warm deploy (nothing changed):          {warm.seconds:.1f} s, changed={warm.changed}")
    print("memory right after:")
    for service, used in memory.items():
        print(f"  {service:<10} {used / mib:8.1f} MiB")
    print(f"  {'total':<10} {sum(memory.values()) / mib:8.1f} MiB")


if __name__ == "__main__":
    main()
