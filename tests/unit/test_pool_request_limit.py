"""The MLflow image's request limit (plugins/mlops_kit_pool): a worker runs at most
pool + overflow - 1 requests at once, so a request's second session of an engine always finds a
free connection (tests/images/test_mlflow_sizing.py shows the deadlock it prevents)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "images" / "mlflow" / "plugins"))
import mlops_kit_pool


@pytest.mark.parametrize(
    ("pool_size", "max_overflow", "threads"),
    [("2", "0", 1), ("5", "10", 14), ("3", "2", 4), ("", "", 14)],
    ids=["kit-default", "stock-sizes", "mixed", "unset-is-sqlalchemy-default"],
)
def test_threads_leave_one_connection_free(
    monkeypatch: pytest.MonkeyPatch, pool_size: str, max_overflow: str, threads: int
) -> None:
    monkeypatch.setenv("MLFLOW_SQLALCHEMYSTORE_POOL_SIZE", pool_size)
    monkeypatch.setenv("MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW", max_overflow)
    assert mlops_kit_pool.request_threads() == threads


class AsgiApp:
    def __init__(self) -> None:
        self.seen: list[tuple[str, float]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        limiter = anyio.to_thread.current_default_thread_limiter()
        self.seen.append((scope["type"], limiter.total_tokens))


def test_the_wrapper_sets_the_worker_limit_before_the_app_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_SQLALCHEMYSTORE_POOL_SIZE", "3")
    monkeypatch.setenv("MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW", "1")
    inner = AsgiApp()
    app = mlops_kit_pool.limit_request_threads(inner)

    async def worker() -> None:
        await app({"type": "lifespan"}, None, None)
        await app({"type": "http"}, None, None)

    anyio.run(worker)
    assert inner.seen == [("lifespan", 3), ("http", 3)]
