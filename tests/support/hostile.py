"""Attempts by other users of the same machine: another login (nobody) and another container's
UID in group 0 (as OpenShift and this kit run them)."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
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


@contextmanager
def watched_command_lines(interval_s: float = 0.005) -> Iterator[set[str]]:
    """Every process command line seen while the block runs, as any user of the machine reads
    them (/proc/PID/cmdline is world-readable): the set fills while the block runs."""
    seen: set[str] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    seen.add(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
                except OSError:
                    continue  # the process ended
            done.wait(interval_s)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield seen
    finally:
        done.set()
        watcher.join()
