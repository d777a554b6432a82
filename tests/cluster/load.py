"""Client load for the resilience checks: a thread that logs through the stock MLflow client and
records what the server acknowledged, and a prober that counts failed requests."""

from __future__ import annotations

import base64
import os
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REQUEST_TIMEOUT_S = "20"


@dataclass
class MetricLoad:
    """log_metric (and every 10th step a small artifact) in a loop, in one run.

    ``acked`` holds the steps the server acknowledged, ``acked_artifacts`` the artifact names;
    failures (the server or its store gone for a moment) are counted, not retried."""

    connection: dict[str, str]
    acked: list[int] = field(default_factory=list)
    acked_artifacts: list[str] = field(default_factory=list)
    failures: int = 0
    run_id: str = ""
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> MetricLoad:
        for key, value in self.connection.items():
            os.environ[key] = value
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
        os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = REQUEST_TIMEOUT_S
        import mlflow

        self._client = mlflow.MlflowClient(self.connection["MLFLOW_TRACKING_URI"])
        experiment = self._client.create_experiment(f"load-{time.time_ns()}")
        self.run_id = self._client.create_run(experiment).info.run_id
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        scratch = Path(tempfile.mkdtemp())
        step = 0
        while not self._stop.is_set():
            try:
                self._client.log_metric(self.run_id, "load", float(step), step=step)
                self.acked.append(step)
                if step % 10 == 0:
                    name = f"step-{step}.txt"
                    (scratch / name).write_text(f"{step}\n")
                    self._client.log_artifact(self.run_id, str(scratch / name), "load")
                    self.acked_artifacts.append(name)
            except Exception:  # any failure is a refused write: counted, not retried
                self.failures += 1
                time.sleep(0.5)
            step += 1
            time.sleep(0.05)

    def acked_since(self, moment: int) -> int:
        return len([s for s in self.acked if s > moment])

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=60)

    def lost(self) -> tuple[list[int], list[str]]:
        """Acknowledged steps and artifacts the server no longer has."""
        history = {m.step for m in self._client.get_metric_history(self.run_id, "load")}
        stored = {Path(f.path).name for f in self._client.list_artifacts(self.run_id, "load")}
        return (
            sorted(set(self.acked) - history),
            sorted(set(self.acked_artifacts) - stored),
        )


@dataclass
class Prober:
    """GET url every 0.2 s with basic auth; counts answers other than 200."""

    url: str
    username: str
    password: str
    ok: int = 0
    failed: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Prober:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        while not self._stop.is_set():
            request = urllib.request.Request(self.url, headers={"Authorization": f"Basic {token}"})  # noqa: S310
            try:
                with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                    self.ok += 1 if response.status == 200 else 0
            except OSError as exc:
                self.failed.append(f"{time.strftime('%X')} {exc}")
            time.sleep(0.2)

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)
