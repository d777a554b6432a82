"""The MLflow image's guard against pages on localhost (plugins/mlops_kit_origins), on a stub
ASGI app: MLflow itself lets every localhost origin in with credentials; the image lets in only
the server's own address and the configured origins. tests/images/test_mlflow.py and
tests/smoke/test_security.py attack the real server."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "images" / "mlflow" / "plugins"))
import mlops_kit_app
import mlops_kit_origins

SERVER = "127.0.0.1:5000"


class Mlflow:
    """A stand-in for MLflow's app: answers 200 and, like MLflow's CORSMiddleware does for
    localhost origins, names the origin in Access-Control-Allow-Origin."""

    def __init__(self) -> None:
        self.called = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.called += 1
        origin = dict(scope["headers"]).get(b"origin", b"")
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"access-control-allow-origin", origin),
                    (b"access-control-allow-credentials", b"true"),
                    (b"content-type", b"application/json"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b"{}"})


def call(app: Any, method: str, origin: str, host: str = SERVER) -> dict[str, Any]:
    scope = {
        "type": "http",
        "method": method,
        "headers": [(b"host", host.encode()), (b"origin", origin.encode())],
    }
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    anyio.run(app, scope, None, send)
    return {"status": sent[0]["status"], "headers": dict(sent[0]["headers"])}


@pytest.mark.parametrize(
    "origin", ["http://localhost:8888", "http://127.0.0.1:3000", "http://[::1]:8080"]
)
@pytest.mark.parametrize("method", ["POST", "DELETE", "PATCH", "PUT", "OPTIONS"])
def test_a_local_page_cannot_act(origin: str, method: str) -> None:
    mlflow = Mlflow()
    answer = call(mlops_kit_origins.LocalOriginGuard(mlflow, []), method, origin)
    assert answer["status"] == 403
    assert b"access-control-allow-origin" not in answer["headers"]
    assert mlflow.called == 0


def test_a_local_page_cannot_read_what_it_gets() -> None:
    mlflow = Mlflow()
    guard = mlops_kit_origins.LocalOriginGuard(mlflow, [])
    answer = call(guard, "GET", "http://localhost:8888")
    assert mlflow.called == 1
    assert not [key for key in answer["headers"] if key.startswith(b"access-control-")]


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        ("http://127.0.0.1:5000", SERVER, []),  # the UI of a server reached at 127.0.0.1
        ("http://localhost:5000", "LOCALHOST:5000", []),  # kubectl port-forward
        ("http://localhost:3000", SERVER, ["http://localhost:3000"]),
        ("http://localhost:3000", SERVER, ["http://localhost:*"]),
        ("https://evil.example", SERVER, []),  # MLflow's own check refuses it
    ],
)
def test_the_server_itself_configured_and_other_origins_pass(
    origin: str, host: str, allowed: list[str]
) -> None:
    mlflow = Mlflow()
    answer = call(mlops_kit_origins.LocalOriginGuard(mlflow, allowed), "POST", origin, host)
    assert answer["status"] == 200
    assert answer["headers"][b"access-control-allow-origin"] == origin.encode()
    assert mlflow.called == 1


def test_the_allowed_origins_are_mlflows_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_SERVER_CORS_ALLOWED_ORIGINS", "http://localhost:3000, https://a.b")
    assert mlops_kit_origins.allowed_origins() == ["http://localhost:3000", "https://a.b"]
    monkeypatch.delenv("MLFLOW_SERVER_CORS_ALLOWED_ORIGINS")
    assert mlops_kit_origins.allowed_origins() == []


def test_the_server_app_has_both_guards(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_SERVER_CORS_ALLOWED_ORIGINS", raising=False)
    monkeypatch.setenv("MLFLOW_SQLALCHEMYSTORE_POOL_SIZE", "3")
    monkeypatch.setenv("MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW", "1")
    mlflow = Mlflow()
    app = mlops_kit_app.serve(mlflow)
    assert call(app, "POST", "http://localhost:8888")["status"] == 403
    assert call(app, "POST", "http://127.0.0.1:5000")["status"] == 200
    assert anyio.run(_limit_seen, mlops_kit_app.serve(mlflow)) == 3


async def _limit_seen(app: Any) -> float:
    import anyio.to_thread

    async def send(_message: dict[str, Any]) -> None:
        return None

    await app({"type": "lifespan"}, None, send)
    return anyio.to_thread.current_default_thread_limiter().total_tokens


def test_a_wsgi_app_is_left_as_it_is() -> None:
    def wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        return []

    assert mlops_kit_app.serve(wsgi) is wsgi
