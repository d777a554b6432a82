"""Measure the Docker target: cold deploy, warm deploy, and the idle memory of the stack.

Usage: .venv/bin/python bench/docker_deploy.py [--idle-seconds 60]

Deploys a throw-away environment `bench-cold` (prefix mlops-bench-cold, ports 18700/18722,
settings in a scratch directory), prints the figures, and purges it (`make bench` measures
deploy/bench/, another environment: this purge never touches it). "Cold" means no containers,
volumes or secrets of the environment exist; the images are already built (`make images` is
timed by the image build, not here).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "scripts"))
from mlopskit.stack import load_stack  # noqa: E402

ENV_NAME = "bench-cold"
PREFIX = "mlops-bench-cold"
SETTINGS = f"""mlops_target: docker
mlops_docker_name_prefix: {PREFIX}
mlops_docker_bind_address: 127.0.0.1
mlops_docker_mlflow_port: 18700
mlops_docker_sftp_port: 18722
"""
UNITS = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}


def playbook(config: Path, name: str, *extra: str, env_name: str = ENV_NAME) -> float:
    """Run ansible/<name> on the environment whose inventory and settings are in ``config``;
    return the wall time (seconds)."""
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
        sys.exit(f"{name} failed:\n{result.stdout[-4000:]}")
    return time.monotonic() - started


def memory_bytes(container: str) -> int:
    out = subprocess.run(
        ["docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", container],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    match = re.match(r"([\d.]+)\s*([KMG]?i?B)", out.strip())
    if not match:
        sys.exit(f"cannot parse docker stats output {out!r}")
    return int(float(match.group(1)) * UNITS[match.group(2)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle-seconds", type=int, default=60, help="settle time before memory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mlops-bench-") as scratch:
        config = Path(scratch)
        inventory = (REPO_ROOT / "deploy" / "local" / "inventory.yml").read_text()
        (config / "inventory.yml").write_text(inventory)
        (config / "settings.yml").write_text(SETTINGS)
        playbook(config, "destroy.yml", "-e", "mlops_purge=true")
        try:
            cold = playbook(config, "deploy.yml")
            warm = playbook(config, "deploy.yml")
            time.sleep(args.idle_seconds)
            # The containers the deploy made (build/bench/stack.json), read before the purge.
            stack = load_stack(ENV_NAME)
            memory = {key: memory_bytes(service.name) for key, service in stack.services.items()}
        finally:
            playbook(config, "destroy.yml", "-e", "mlops_purge=true")
    mib = 1024**2
    print(f"cold deploy (images present, no state): {cold:.1f} s")
    print(f"warm deploy (nothing changed):          {warm:.1f} s")
    print(f"idle memory after {args.idle_seconds} s:")
    for service, used in memory.items():
        print(f"  {service:<9} {used / mib:8.1f} MiB")
    print(f"  {'total':<9} {sum(memory.values()) / mib:8.1f} MiB")


if __name__ == "__main__":
    main()
