"""Thin wrappers around subprocess that log what runs and fail loudly."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence


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
