"""ASGI guard: pages on localhost get no more than pages anywhere else.

MLflow's security middleware lets every http://localhost, 127.0.0.1 and [::1] origin in, on
any port, with credentials (mlflow/server/fastapi_security.py: LOCALHOST_ORIGIN_PATTERNS for
CORSMiddleware, is_localhost_origin in should_block_cors_request): convenient for a server on a
laptop, but on a shared server it lets any page a person opens on their own machine (a
notebook extension, a dev server, a malicious package's page) act and read with the MLflow
credentials their browser holds. This guard treats such an origin like any other foreign one:
unless it is the server's own address (the Host it was reached at) or in
MLFLOW_SERVER_CORS_ALLOWED_ORIGINS (MLflow's variable, set from MLFLOW_CORS_ALLOWED_ORIGINS),
a preflight or state-changing request is refused with 403 before MLflow sees it, and no answer
names the origin in Access-Control-Allow-* headers, so the page cannot read it.
"""

from __future__ import annotations

import fnmatch
import json
from typing import Any
from urllib.parse import urlsplit

# MLflow's own definitions of a localhost origin and of the configured origins, so that the guard
# covers exactly what MLflow exempts (mlflow/server/security_utils.py).
from mlflow.server.security_utils import get_allowed_origins_from_env, is_localhost_origin

# MLflow's state-changing methods, and the preflight.
GUARDED_METHODS = {"POST", "PUT", "DELETE", "PATCH", "OPTIONS"}


def allowed_origins() -> list[str]:
    return get_allowed_origins_from_env() or []


def is_foreign_local_origin(origin: str, host: str, allowed: list[str]) -> bool:
    """Whether `origin` is a localhost page other than the server itself and not allowed."""
    if not is_localhost_origin(origin):
        return False  # MLflow's own check handles every other origin
    if host and urlsplit(origin).netloc.lower() == host.lower():
        return False  # the server's own pages, reached at a local address
    return not any(
        fnmatch.fnmatch(origin, pattern) if "*" in pattern else origin == pattern
        for pattern in allowed
    )


def _header(scope: dict[str, Any], name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


class LocalOriginGuard:
    def __init__(self, app: Any, allowed: list[str]) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        origin = _header(scope, b"origin") if scope["type"] == "http" else ""
        if not origin or not is_foreign_local_origin(origin, _header(scope, b"host"), self.allowed):
            await self.app(scope, receive, send)
            return
        if scope["method"].upper() in GUARDED_METHODS:
            body = json.dumps(
                {
                    "error_code": "PERMISSION_DENIED",
                    "message": f"Cross-origin request blocked: {origin} is not an allowed origin "
                    "(MLFLOW_CORS_ALLOWED_ORIGINS)",
                }
            ).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 403,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return

        async def without_cors_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {
                    **message,
                    "headers": [
                        (key, value)
                        for key, value in message.get("headers", [])
                        if not key.lower().startswith(b"access-control-")
                    ],
                }
            await send(message)

        await self.app(scope, receive, without_cors_headers)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)


def guard_local_origins(app: Any) -> LocalOriginGuard:
    return LocalOriginGuard(app, allowed_origins())
