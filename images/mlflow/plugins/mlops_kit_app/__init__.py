"""The server app of the image: MLflow's own (`mlflow.app` entry point `mlops-kit`), or basic
auth with the kit's roles (`mlops-kit-auth`, mlops_kit_auth), each wrapped by the kit's ASGI
guards: at most pool + overflow - 1 requests per worker (mlops_kit_pool), and no more for pages
on localhost than for any foreign page (mlops_kit_origins); request bodies reach it joined into
large pieces (bodies.py). A WSGI app (gunicorn) stays as it
is: the image always serves with uvicorn, MLflow's default.

Unless MLFLOW_PRESIGNED_ARTIFACT_URLS is true, every artifact byte passes through the server:
MLflow (3.17) otherwise hands clients presigned URLs of an s3:// destination (downloads of
every size, uploads from 500 MB), which only work for clients that reach the store's endpoint
under the server's own name for it, and hang elsewhere. Downloads from a store that can stream
(sftp://) are sent while they are read (downloads.py).

On PostgreSQL, a batch of metrics is written in two statements instead of MLflow's statement per
key (metrics.py)."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import Any

from mlops_kit_origins import guard_local_origins
from mlops_kit_pool import limit_request_threads

from .bodies import join_request_bodies
from .downloads import stream_artifact_downloads
from .metrics import write_metrics_in_bulk

PRESIGNED_URLS_SETTING = "MLFLOW_PRESIGNED_ARTIFACT_URLS"
# MLflow's checks of what the artifact store supports, and the error each raises when it does not.
STORE_CAPABILITY_CHECKS = {
    "_validate_support_multipart_upload": "_UnsupportedMultipartUploadException",
    "_validate_support_multipart_download": "_UnsupportedMultipartDownloadException",
    "_validate_support_presigned_upload": "_UnsupportedPresignedUploadException",
    "_validate_support_presigned_download": "_UnsupportedPresignedDownloadException",
}
# What /api/3.0/mlflow/server-info tells clients (mlflow.utils.server_info).
ADVERTISED_CAPABILITIES = ("multipart_uploads_enabled", "multipart_downloads_enabled")


def _unsupported(exception: type[Exception]) -> Callable[[Any], None]:
    def check(_artifact_repo: Any) -> None:
        raise exception()

    return check


def keep_artifacts_proxied() -> None:
    """Make MLflow treat the artifact store as one without presigned URLs: the server-info
    endpoint advertises none, and the endpoints that would hand them out refuse, as MLflow does
    for such a store (clients then stream through the server)."""
    if os.environ.get(PRESIGNED_URLS_SETTING, "").strip().lower() == "true":
        return
    from mlflow.server import handlers

    for check, exception in STORE_CAPABILITY_CHECKS.items():
        if hasattr(handlers, check) and hasattr(handlers, exception):
            setattr(handlers, check, _unsupported(getattr(handlers, exception)))
    build = getattr(handlers, "build_server_info_payload", None)
    if build is None or getattr(build, "keeps_artifacts_proxied", False):
        return

    def build_server_info_payload() -> dict[str, Any]:
        payload = build()
        for capability in ADVERTISED_CAPABILITIES:
            if capability in payload:
                payload[capability] = False
        return payload

    build_server_info_payload.keeps_artifacts_proxied = True  # type: ignore[attr-defined]
    handlers.build_server_info_payload = build_server_info_payload
    try:  # the native FastAPI route of the endpoint (MLflow 3.17) imported it by name
        from mlflow.server import server_info_api
    except ImportError:
        return
    server_info_api.build_server_info_payload = build_server_info_payload


def serve(app: Any) -> Any:
    keep_artifacts_proxied()
    write_metrics_in_bulk()
    if not inspect.iscoroutinefunction(type(app).__call__):
        return app
    stream_artifact_downloads(app)
    return join_request_bodies(guard_local_origins(limit_request_threads(app)))


def create_app() -> Any:
    """MLflow's server app without auth, guarded."""
    from mlflow.server.fastapi_app import app

    return serve(app)
