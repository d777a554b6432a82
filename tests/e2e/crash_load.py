"""A client that keeps writing while services crash or the host restarts, and remembers what
the server acknowledged: a metric value per step, and every fifth step a small artifact. What it
was told succeeded must be there afterwards; what failed may or may not be (the server may have
committed it before the connection broke)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlopskit.engine import ensure_engine

from tests.e2e.e2e_support import HEALTH_TIMEOUT_S, containers, docker_json, wait_healthy


@dataclass
class AcknowledgedWrites:
    client: Any
    run_id: str
    metrics: list[int] = field(default_factory=list)
    artifacts: list[int] = field(default_factory=list)
    failures: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def write(self, step: int) -> None:
        try:
            self.client.log_metric(self.run_id, "ack", float(step), step=step)
            self.metrics.append(step)
            if step % 5 == 0:
                self.client.log_text(self.run_id, f"step {step}", f"ack/{step}.txt")
                self.artifacts.append(step)
        except Exception:  # a crashed service: the write is not acknowledged
            self.failures += 1
            time.sleep(0.5)

    def loop(self) -> None:
        step = 0
        while not self.stop.is_set():
            self.write(step)
            step += 1
            time.sleep(0.05)

    def acknowledged_since(self, count: int) -> int:
        return len(self.metrics) - count

    def lost(self) -> list[str]:
        """What the server acknowledged and no longer has."""
        history = {m.step: m.value for m in self.client.get_metric_history(self.run_id, "ack")}
        problems = [f"metric step {s}" for s in self.metrics if history.get(s) != float(s)]
        listed = {a.path for a in self.client.list_artifacts(self.run_id, "ack")}
        for step in self.artifacts:
            path = f"ack/{step}.txt"
            if path not in listed:
                problems.append(f"artifact {path}")
        return problems


def run_in_background(writes: AcknowledgedWrites) -> threading.Thread:
    thread = threading.Thread(target=writes.loop, daemon=True)
    thread.start()
    return thread


def wait_for_progress(writes: AcknowledgedWrites, since: int, at_least: int, timeout_s: float):
    """Until the client got `at_least` more acknowledgements than `since` (the stack serves
    writes again), or fail."""
    deadline = time.monotonic() + timeout_s
    while writes.acknowledged_since(since) < at_least:
        assert time.monotonic() < deadline, (
            f"no {at_least} acknowledged writes within {timeout_s}s after the crash "
            f"({writes.failures} failures so far)"
        )
        time.sleep(0.5)


def restart_count(container: str) -> int:
    (info,) = docker_json("inspect", container)
    return info["RestartCount"]


@contextmanager
def writes_under_load(env: str, client: Any, label: str) -> Iterator[AcknowledgedWrites]:
    """`client` writes into a new run from the block's start, with 5 writes acknowledged
    before the block runs; after it, every service of `env` must be healthy."""
    experiment = client.create_experiment(f"{label}-{os.urandom(4).hex()}")
    writes = AcknowledgedWrites(client, client.create_run(experiment).info.run_id)
    thread = run_in_background(writes)
    try:
        wait_for_progress(writes, 0, 5, timeout_s=60)
        yield writes
        wait_healthy(env)
    finally:
        writes.stop.set()
        thread.join(timeout=60)


def crash_each_service_under_load(env: str, client: Any) -> AcknowledgedWrites:
    """kill -9 of each service's main process of `env` in turn while `client` writes; each
    time wait until Docker restarted it and writes are acknowledged again."""
    with writes_under_load(env, client, "crash") as writes:
        for service, container in containers(env).items():
            count = restart_count(container)
            (info,) = docker_json("inspect", container)
            os.kill(info["State"]["Pid"], signal.SIGKILL)
            wait_for_progress(writes, len(writes.metrics), 5, timeout_s=HEALTH_TIMEOUT_S)
            assert restart_count(container) == count + 1, f"{service} was not restarted by Docker"
    return writes


DOCKERD_PID_FILE = Path("/var/run/docker.pid")
ENGINE_STOP_TIMEOUT_S = 120


def restart_the_docker_engine() -> None:
    """What a reboot does to the stack: the engine stops every container, as at shutdown, and
    when it is back it starts those whose restart policy says so; nobody runs a command.
    Under systemd `systemctl restart docker`; without it (CI), the dockerd that
    `mlopskit host engine` started gets SIGTERM and is started the same way again."""
    if Path("/run/systemd/system").is_dir():
        subprocess.run(["systemctl", "restart", "docker"], check=True, timeout=300)
        return
    pid = int(DOCKERD_PID_FILE.read_text())
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + ENGINE_STOP_TIMEOUT_S
    while Path(f"/proc/{pid}").exists():
        assert time.monotonic() < deadline, f"dockerd {pid} still runs after SIGTERM"
        time.sleep(0.5)
    ensure_engine()


def restart_the_engine_under_load(env: str, client: Any) -> AcknowledgedWrites:
    """Restart the Docker engine while `client` writes; wait until writes are acknowledged
    again and every service of `env` is healthy."""
    with writes_under_load(env, client, "host-restart") as writes:
        restart_the_docker_engine()
        wait_for_progress(writes, len(writes.metrics), 5, timeout_s=HEALTH_TIMEOUT_S)
    return writes
