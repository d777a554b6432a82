"""Attempts by other users of the same machine: another login (nobody) and another container's
UID in group 0 (as OpenShift and this kit run them)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path

OTHER_USERS = ("65534:65534", "1000123:0")


def assert_unreadable(paths: Iterable[Path], uid_gid: str) -> None:
    """`cat` of each file as uid:gid (no supplementary groups) must be refused."""
    uid, gid = uid_gid.split(":")
    for path in paths:
        attempt = subprocess.run(
            ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "cat", str(path)],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert attempt.returncode != 0, f"UID {uid} GID {gid} read {path}"
        assert "Permission denied" in attempt.stderr, attempt.stderr
