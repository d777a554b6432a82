"""Pure logic of request bodies joined into large pieces before MLflow's middlewares
(mlops_kit_app/bodies.py). The real transfers are measured by `make bench` and checked whole by
tests/images and tests/e2e."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import mlops_kit_sftp
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "images" / "mlflow" / "plugins"))
from mlops_kit_app.bodies import BODY_PIECE_BYTES, JoinedRequestBodies

KIB = 1024


def body_messages(pieces: list[bytes], end: dict[str, Any] | None = None) -> list[dict]:
    """What uvicorn hands an app for a body sent in ``pieces``; ``end`` replaces the last."""
    messages = [
        {"type": "http.request", "body": piece, "more_body": i < len(pieces) - 1}
        for i, piece in enumerate(pieces)
    ]
    if end is not None:
        messages[-1] = end
    return messages


def seen_by_app(messages: list[dict], scope_type: str = "http") -> list[dict]:
    """The messages an app behind JoinedRequestBodies receives until the body ends."""
    given = iter(messages)
    seen: list[dict] = []

    async def receive() -> dict:
        return next(given)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            seen.append(message)
            if message["type"] != "http.request" or not message.get("more_body", False):
                return

    asyncio.run(JoinedRequestBodies(app)({"type": scope_type}, receive, None))
    return seen


@pytest.mark.parametrize("piece", [1, 64 * KIB, 100_003, 3 * BODY_PIECE_BYTES])
@pytest.mark.parametrize("total", [0, 10, BODY_PIECE_BYTES, 5 * BODY_PIECE_BYTES + 17])
def test_a_body_reaches_the_app_whole_in_pieces_of_at_least_a_mib(piece: int, total: int) -> None:
    if piece == 1 and total > BODY_PIECE_BYTES:
        total = BODY_PIECE_BYTES + 5  # a million 1-byte messages would take a while
    body = bytes(i % 253 for i in range(total))
    sent = [body[i : i + piece] for i in range(0, total, piece)] or [b""]
    seen = seen_by_app(body_messages(sent))
    assert b"".join(m["body"] for m in seen) == body
    assert [m["more_body"] for m in seen] == [True] * (len(seen) - 1) + [False]
    assert all(len(m["body"]) >= BODY_PIECE_BYTES for m in seen[:-1])
    assert len(seen) <= max(1, -(-total // BODY_PIECE_BYTES))


def test_uvicorns_64_kib_pieces_become_16_times_fewer() -> None:
    sent = [bytes(64 * KIB)] * 160
    assert len(seen_by_app(body_messages(sent))) == 10


def test_a_client_gone_mid_body_reaches_the_app_as_a_disconnect() -> None:
    sent = body_messages([bytes(64 * KIB)] * 3, end={"type": "http.disconnect"})
    assert seen_by_app(sent) == [{"type": "http.disconnect"}]


def test_other_connections_pass_through_untouched() -> None:
    messages = body_messages([b"a", b"b"])
    assert seen_by_app(messages, scope_type="lifespan") == messages  # not joined


def test_joining_never_holds_more_than_the_upload_stream_would() -> None:
    """The upload stream collects a body into pieces of STREAM_CHUNK_BYTES before it writes
    them; joined pieces no larger than that add no memory and no delay to an upload."""
    assert BODY_PIECE_BYTES <= mlops_kit_sftp.STREAM_CHUNK_BYTES
