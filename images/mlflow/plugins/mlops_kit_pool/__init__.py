"""SQLAlchemy engine plugin: the server's database pools get exactly the image's sizes.

MLflow reads MLFLOW_SQLALCHEMYSTORE_POOL_SIZE and MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW but passes
them to SQLAlchemy only when they are not 0 (mlflow/store/db/utils.py), so a max overflow of 0
silently became SQLAlchemy's default of 10 connections more per engine. The entrypoint sets those
variables from MLFLOW_DB_POOL_SIZE and MLFLOW_DB_MAX_OVERFLOW and adds `plugin=mlops_kit_pool` to
the database URIs of the server; this plugin then sets both sizes on every queue pool made from
them (tracking, registry, auth and workspace stores alike).
"""

from __future__ import annotations

import os
from typing import Any

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
