"""Pure logic of how the MLflow image moves artifact bytes between HTTP and SFTP: request bodies
joined into large pieces before MLflow's middlewares (mlops_kit_app/bodies.py), and the thread
that reads a download ahead of the event loop (mlops_kit_app/downloads.py). The real transfers
are measured by `make bench` and checked whole by tests/images and tests/e2e."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "images" / "mlflow" / "plugins"))
from mlops_kit_app.bodies import BODY_PIECE_BYTES, JoinedRequestBodies
from mlops_kit_app.downloads import READ_AHEAD_PIECES, read_ahead

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


class Source:
    """A blocking iterator of numbered pieces that records how far it was read, in which
    thread it ran and whether it was closed."""

    def __init__(self, count: int, fail_at: int | None = None) -> None:
        self.count = count
        self.fail_at = fail_at
        self.taken = 0
        self.threads: set[str] = set()
        self.closed = threading.Event()

    def pieces(self) -> Iterator[bytes]:
        try:
            for number in range(self.count):
                self.threads.add(threading.current_thread().name)
                if number == self.fail_at:
                    raise OSError("the SFTP connection broke")
                self.taken += 1
                yield number.to_bytes(4, "big")
        finally:
            self.closed.set()


def test_a_download_comes_in_order_read_ahead_by_a_thread_of_its_own() -> None:
    source = Source(50)
    taken_while_away: list[int] = []

    async def consume() -> list[bytes]:
        got = []
        async for piece in read_ahead(source.pieces()):
            if not got:
                await asyncio.sleep(0.2)  # the event loop sends the first piece meanwhile
                taken_while_away.append(source.taken)
            got.append(piece)
        return got

    got = asyncio.run(consume())
    assert got == [n.to_bytes(4, "big") for n in range(50)]
    assert source.threads == {"mlops-kit-download"}
    # It read on while the first piece was away, but no more than its depth (+1 in its hand).
    assert 2 <= taken_while_away[0] <= READ_AHEAD_PIECES + 2
    assert source.closed.wait(5)


def test_a_download_left_half_way_closes_its_source() -> None:
    source = Source(1000)

    async def take_three() -> None:
        pieces = read_ahead(source.pieces())
        for _ in range(3):
            await anext(pieces)
        await pieces.aclose()  # the client hung up

    asyncio.run(take_three())
    assert source.closed.wait(5), "the pooled SFTP connection would never go back"
    taken = source.taken
    time.sleep(0.1)
    assert source.taken == taken <= 3 + READ_AHEAD_PIECES + 1


def test_a_failed_read_fails_the_download() -> None:
    source = Source(10, fail_at=6)

    async def consume() -> int:
        return len([piece async for piece in read_ahead(source.pieces())])

    with pytest.raises(OSError, match="broke"):
        asyncio.run(consume())
    assert source.closed.wait(5)
