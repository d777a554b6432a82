"""Thin wrappers around subprocess that log what runs and fail loudly."""

from __future__ import annotations

import fcntl
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path


class CommandError(RuntimeError):
    """A command exited non-zero; the message names it and carries its stderr tail."""


def log(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


def run(
    args: Sequence[str],
    *,
    check: bool = True,
    capture: bool = False,
    env: Mapping[str, str] | None = None,
    input_bytes: bytes | None = None,
    quiet: bool = False,
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``args``; raise CommandError with the stderr tail when ``check`` and it fails."""
    if not quiet:
        log(shlex.join(args))
    result = subprocess.run(
        list(args),
        check=False,
        env=dict(env) if env is not None else None,
        input=input_bytes,
        cwd=cwd,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.PIPE if capture else None,
    )
    if check and result.returncode != 0:
        tail = (result.stderr or b"").decode(errors="replace").strip()[-2000:]
        raise CommandError(f"{shlex.join(args)} exited {result.returncode}\n{tail}".rstrip())
    return result


def succeeds(args: Sequence[str]) -> bool:
    """True when ``args`` exits 0; output is discarded."""
    return (
        subprocess.run(
            list(args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False
        ).returncode
        == 0
    )


@contextmanager
def taking_turns(lock_file: Path, waiting_for: str) -> Iterator[None]:
    """Hold ``lock_file`` exclusively (flock) for the block; say what we wait for when another
    process holds it. The lock goes with the process, so a killed holder never blocks."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("w") as turn:
        try:
            fcntl.flock(turn, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for {waiting_for} (lock: {lock_file})")
            fcntl.flock(turn, fcntl.LOCK_EX)
        yield
