"""SQLAlchemy engine plugin: the server's database pools get exactly the image's sizes.

MLflow reads MLFLOW_SQLALCHEMYSTORE_POOL_SIZE and MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW but passes
them to SQLAlchemy only when they are not 0 (mlflow/store/db/utils.py), so a max overflow of 0
silently became SQLAlchemy's default of 10 connections more per engine. The entrypoint sets those
variables from MLFLOW_DB_POOL_SIZE and MLFLOW_DB_MAX_OVERFLOW and adds `plugin=mlops_kit_pool` to
the database URIs of the server; this plugin then sets both sizes on every queue pool made from
them (tracking, registry, auth and workspace stores alike).

A pool alone can deadlock: MLflow's writes hold one session of an engine while opening a second
of the same engine (`log_batch` calls `_log_params` and `_log_metrics`, each with its own
session), and each worker runs up to 40 requests at once in anyio's threads. With every
connection held by a request waiting for its second, all of them wait for the pool timeout
(30 s) and fail. RequestThreadLimit therefore lets a worker run at most
`pool_size + max_overflow - 1` requests at once: some connection is then always free for a
request's second session (mlops_kit_app wraps the server app in it).
"""

from __future__ import annotations

import os
from typing import Any

import anyio.to_thread
from sqlalchemy.engine import URL, CreateEnginePlugin
from sqlalchemy.pool import QueuePool

POOL_ARGUMENTS = {
    "pool_size": "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE",
    "max_overflow": "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW",
}


class PoolSizePlugin(CreateEnginePlugin):
    def update_url(self, url: URL) -> URL:
        """Nothing of ours stays in the URL (SQLAlchemy removes `plugin=` itself)."""
        return url

    def handle_pool_kwargs(self, pool_cls: type, pool_args: dict[str, Any]) -> None:
        if not issubclass(pool_cls, QueuePool):
            return
        for argument, variable in POOL_ARGUMENTS.items():
            if raw := os.environ.get(variable, "").strip():
                pool_args[argument] = int(raw)


def pool_capacity() -> int:
    """Connections one engine may hold: the pool plus its overflow (MLflow's variables)."""
    sizes = {name: os.environ.get(env, "").strip() for name, env in POOL_ARGUMENTS.items()}
    # SQLAlchemy's own sizes where MLflow's variables are unset (the image always sets them).
    return int(sizes["pool_size"] or 5) + int(sizes["max_overflow"] or 10)


def request_threads() -> int:
    """Requests a worker may run at once without a nested session waiting on a full pool."""
    return max(1, pool_capacity() - 1)


class RequestThreadLimit:
    """ASGI wrapper: sets the worker's anyio thread limit, which MLflow's Flask handlers (run by
    its WSGI middleware with `anyio.to_thread.run_sync`) share, before the first event."""

    def __init__(self, app: Any, threads: int) -> None:
        self.app = app
        self.threads = threads
        self.limited = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if not self.limited:
            # A per-event-loop value: each uvicorn worker sets its own, at its lifespan start.
            anyio.to_thread.current_default_thread_limiter().total_tokens = self.threads
            self.limited = True
        await self.app(scope, receive, send)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)


def limit_request_threads(app: Any) -> RequestThreadLimit:
    return RequestThreadLimit(app, request_threads())
