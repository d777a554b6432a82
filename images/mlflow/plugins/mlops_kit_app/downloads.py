"""Proxied artifact downloads that stream from the artifact store while the client reads.

MLflow (3.17) serves ``GET /api/2.0/mlflow-artifacts/artifacts/<path>`` from a store without
local files (sftp://) by copying the whole file into the server's /tmp first and only then
sending it: two transfers one after the other, and no artifact larger than /tmp can be
downloaded at all (a 500, "No space left on device"). For a store that can open an artifact as
a stream (mlops_kit_sftp: ``open_artifact_stream``), the routes here send the bytes as they
come. Any other store gets MLflow's own endpoint.

The routes go in front of MLflow's identical ones, inside the FastAPI app: the auth middleware
around the app checks them exactly as it checks MLflow's (by path and method).
"""

from __future__ import annotations

import asyncio
import json
import posixpath
from typing import Any

DOWNLOAD_PATHS = (
    "/api/2.0/mlflow-artifacts/artifacts/{artifact_path:path}",
    "/ajax-api/2.0/mlflow-artifacts/artifacts/{artifact_path:path}",
)


def stream_artifact_downloads(app: Any) -> bool:
    """Put the streaming download routes first in ``app`` (a FastAPI app; idempotent). False
    when this MLflow has no FastAPI artifact router to stand in for."""
    try:
        from fastapi.responses import JSONResponse, StreamingResponse
        from fastapi.routing import APIRoute
        from mlflow.exceptions import MlflowException
        from mlflow.server import artifact_router as stock
        from mlflow.utils.mime_type_utils import _guess_mime_type
        from mlflow.utils.uri import validate_path_is_safe
    except ImportError:
        return False
    router = getattr(app, "router", None)
    stock_download = getattr(stock, "download_artifact", None)
    if router is None or stock_download is None:
        return False
    if any(
        getattr(route.endpoint, "streams", False)
        for route in router.routes
        if hasattr(route, "endpoint")
    ):
        return True

    async def download_artifact(artifact_path: str) -> Any:
        if not stock._is_serving_proxied_artifacts():
            return await stock_download(artifact_path)
        repo = stock._get_artifact_repo()
        if not hasattr(repo, "open_artifact_stream"):
            return await stock_download(artifact_path)
        try:
            path = stock._get_workspace_scoped_path(validate_path_is_safe(artifact_path))
            size, chunks = await asyncio.to_thread(repo.open_artifact_stream, path)
        except MlflowException as error:
            return JSONResponse(
                status_code=error.get_http_status_code(),
                content=json.loads(error.serialize_as_json()),
            )
        name = posixpath.basename(path)
        return StreamingResponse(
            chunks,
            headers={
                "Content-Type": _guess_mime_type(name),
                "Content-Disposition": stock._content_disposition(name),
                "X-Content-Type-Options": "nosniff",
                "Content-Length": str(size),
            },
        )

    download_artifact.streams = True  # type: ignore[attr-defined]
    routes = [APIRoute(path, download_artifact, methods=["GET"]) for path in DOWNLOAD_PATHS]
    router.routes[0:0] = routes
    return True
