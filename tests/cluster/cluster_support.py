"""Helpers of the cluster run (`make test-cluster`): the throwaway cluster of `make cluster`,
real make, Ansible, Helm and kubectl. Results go to build/test-cluster/ for CI to keep."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlopskit.environments import parse_connection_env
from mlopskit.k8s_tools import find_tool

from tests.e2e.e2e_support import REPO_ROOT, Result, run

KUBECONFIG = REPO_ROOT / "build" / "cluster" / "kubeconfig"
KEEP_DIR = REPO_ROOT / "build" / "test-cluster"
# The editor with DVC write access of deploy/cluster*/people.yml (the smoke suite's person too).
PERSON = "alice"


@dataclass
class Env:
    """One deploy/<env> on the cluster: its namespace, release and port-forwarded ports."""

    name: str
    namespace: str
    release: str
    kubeconfig: Path = KUBECONFIG
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def build_dir(self) -> Path:
        return REPO_ROOT / "build" / self.name

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [str(find_tool("kubectl")), "--kubeconfig", str(self.kubeconfig), *args]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args)}: {result.stderr.strip()}")
        return result

    def get(self, *args: str) -> list[dict[str, Any]]:
        out = self.kubectl("get", "-n", self.namespace, *args, "-o", "json").stdout
        document = json.loads(out)
        return document.get("items", [document])

    def names(self, kind: str, *selectors: str) -> list[str]:
        selector = ",".join([f"app.kubernetes.io/instance={self.release}", *selectors])
        return sorted(d["metadata"]["name"] for d in self.get(kind, "-l", selector))

    def helm(self, *args: str) -> Result:
        return run(
            [str(find_tool("helm")), "--kubeconfig", str(self.kubeconfig),
             "--namespace", self.namespace, *args]
        )  # fmt: skip

    def connection_file(self, person: str = PERSON) -> Path:
        return self.build_dir / "people" / person / "connection.env"

    def connection(self, person: str = PERSON) -> dict[str, str]:
        """A person's connection.env (deploy/<env>/people.yml), as a data scientist gets it."""
        return parse_connection_env(self.connection_file(person).read_text())

    def tracking_uri(self) -> str:
        return self.connection()["MLFLOW_TRACKING_URI"]

    def save_timings(self) -> None:
        KEEP_DIR.mkdir(parents=True, exist_ok=True)
        (KEEP_DIR / f"timings-{self.name}.json").write_text(json.dumps(self.timings, indent=2))
        print(f"\n[cluster] {self.name} timings: "
              + ", ".join(f"{k} {v:.0f}s" for k, v in self.timings.items()))  # fmt: skip


def health(uri: str, timeout_s: float = 10) -> int:
    """HTTP status of MLflow's /health (0 when nothing answers)."""
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=timeout_s) as response:  # noqa: S310
            return response.status
    except OSError:
        return 0


def wait_for(condition: Any, timeout_s: float, what: str, interval_s: float = 2) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s:.0f}s"
        time.sleep(interval_s)


def port_answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except OSError:
        return False
    return True


def unrelated_process() -> subprocess.Popen[bytes]:
    """A process that is not ours to kill (what a stale pid file may name)."""
    return subprocess.Popen(["sleep", "600"], start_new_session=True)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def check_persistence(env: Env) -> Result:
    """tests/e2e/check_persistence.py against the env: every recorded run, model, DVC object."""
    script = REPO_ROOT / "tests" / "e2e" / "check_persistence.py"
    return run(
        [sys.executable, str(script), str(env.build_dir / "smoke-manifest.json")],
        env={**env.connection(), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1"},
    )
