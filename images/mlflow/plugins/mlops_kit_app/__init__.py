"""The server app of the image: MLflow's own (`mlflow.app` entry point `mlops-kit`), or basic
auth with the kit's roles (`mlops-kit-auth`, mlops_kit_auth), each wrapped by the kit's ASGI
guards: at most pool + overflow - 1 requests per worker (mlops_kit_pool), and no more for pages
on localhost than for any foreign page (mlops_kit_origins). A WSGI app (gunicorn) stays as it
is: the image always serves with uvicorn, MLflow's default."""

from __future__ import annotations

import inspect
from typing import Any

from mlops_kit_origins import guard_local_origins
from mlops_kit_pool import limit_request_threads


def serve(app: Any) -> Any:
    if not inspect.iscoroutinefunction(type(app).__call__):
        return app
    return guard_local_origins(limit_request_threads(app))


def create_app() -> Any:
    """MLflow's server app without auth, guarded."""
    from mlflow.server.fastapi_app import app

    return serve(app)
