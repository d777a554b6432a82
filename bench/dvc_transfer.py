"""DVC area of `make bench`: `dvc push` and `dvc pull` (cache and workspace emptied first) to the
person's DVC remote, set up as the README tells data scientists, beside raw OpenSSH `sftp put -r`
/ `get -r` of the same tree to the same SFTP server."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from bench.docker_deploy import cpu_seconds
from bench.report import Row, at_least
from bench.transfer import MIB, remote_root, remove_remote, sftp, timed, write_random

AREA = "dvc"
RAW = "raw OpenSSH `sftp`"
VENV_BIN = Path(sys.executable).parent
SMALL_FILES = 1000
SMALL_SIZE = 100 * 1024
# Issue 14: one large file through this remote at least this share of raw sftp's speed.
# The download through the remote is `dvc fetch`; `dvc pull` then also copies each file from
# the cache into the workspace (a local copy raw `sftp get` does not make: 1.9 s of a 1 GiB pull
# here), so the goal is set on the fetch and the pull is shown beside it.
GOAL = at_least(0.8)
PULLED = "empty cache and workspace"
FETCHED = "empty cache: the download alone"


def _run(args: list[str], cwd: Path, home: Path) -> None:
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(home),
        "DVC_NO_ANALYTICS": "1",
        "GIT_TERMINAL_PROMPT": "0",
    }
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")


@dataclass(frozen=True)
class Transfer:
    """Wall seconds of one direction; for `dvc`, also the client's and the SFTP server's CPU
    seconds over it (None: not read)."""

    seconds: float
    client_cpu: float | None = None
    server_cpu: float | None = None


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _profiled(action: Callable[[], object], server: str | None) -> Transfer:
    """Time ``action`` (a child process) with its CPU time and the SFTP container's."""
    client, served = _children_cpu(), cpu_seconds(server) if server else None
    seconds = timed(action)
    return Transfer(
        seconds,
        _children_cpu() - client,
        cpu_seconds(server) - served if server and served is not None else None,
    )


@dataclass(frozen=True)
class Case:
    """One tree both ways: through DVC and, as the reference, through raw `sftp`."""

    push: Transfer
    pull: Transfer  # empty cache and workspace: `dvc fetch`, then a copy into the workspace
    fetch: Transfer  # empty cache: the download from the remote alone
    put: float
    get: float


def _case(connection: Mapping[str, str], make_data, workdir: Path, server: str | None) -> Case:
    """`dvc push`, `dvc pull` and `dvc fetch` (empty cache), raw `sftp put -r`, `get -r` of the
    same tree."""
    tag = uuid.uuid4().hex[:8]
    repo = workdir / f"repo-{tag}"
    home = workdir / "home"
    repo.mkdir(parents=True)
    home.mkdir(exist_ok=True)

    def run(*args: str) -> None:
        _run(list(args), repo, home)

    remote = f"{remote_root(connection)}/bench-{tag}"
    url = connection["DVC_REMOTE_URL"].rstrip("/") + f"/bench-{tag}"
    run("git", "init", "-q")
    run("dvc", "init", "-q")
    run("dvc", "remote", "add", "-d", "store", url)
    run("dvc", "remote", "modify", "--local", "store", "keyfile", connection["SFTP_PRIVATE_KEY"])
    make_data(repo / "data")
    run("dvc", "add", "-q", "data")
    try:
        push = _profiled(lambda: run("dvc", "push", "-q"), server)
        shutil.rmtree(repo / "data")
        shutil.rmtree(repo / ".dvc" / "cache")
        pull = _profiled(lambda: run("dvc", "pull", "-q"), server)
        shutil.rmtree(repo / ".dvc" / "cache")
        fetch = _profiled(lambda: run("dvc", "fetch", "-q"), server)
    finally:
        remove_remote(connection, remote)

    raw_remote = f"{remote_root(connection)}/bench-raw-{tag}"
    back = workdir / f"raw-{tag}"
    try:
        put = timed(lambda: sftp(connection, f"put -r {repo / 'data'} {raw_remote}\n"))
        get = timed(lambda: sftp(connection, f"get -r {raw_remote} {back}\n"))
    finally:
        remove_remote(connection, raw_remote)
    sizes = sorted(p.stat().st_size for p in back.rglob("*") if p.is_file())
    if sizes != sorted(p.stat().st_size for p in (repo / "data").rglob("*") if p.is_file()):
        raise RuntimeError("sftp get -r returned another tree")
    shutil.rmtree(repo)
    shutil.rmtree(back)
    print(f"  dvc push {push.seconds:.1f} s / pull {pull.seconds:.1f} s / fetch "
          f"{fetch.seconds:.1f} s, sftp put -r {put:.1f} s / get -r {get:.1f} s")  # fmt: skip
    return Case(push, pull, fetch, put, get)


def small_files(root: Path, count: int = SMALL_FILES) -> None:
    """``count`` random files of 100 KiB in 10 folders."""
    for index in range(count):
        write_random(root / f"part-{index % 10}" / f"file-{index:05d}.bin", SMALL_SIZE)


def _cpu_rows(label: str, verb: str, transfer: Transfer) -> list[Row]:
    """Where the wall time of a `dvc` command went: its own CPU and the SFTP server's."""
    rows = [Row(AREA, f"{label}: `dvc {verb}` client CPU (user+sys)", "s", transfer.client_cpu)]
    if transfer.server_cpu is not None:
        rows.append(Row(AREA, f"{label}: `dvc {verb}` SFTP server CPU", "s", transfer.server_cpu))
    return rows


def run(
    connection: Mapping[str, str],
    big_mib: int,
    workdir: Path,
    files: int = SMALL_FILES,
    server: str | None = None,
) -> list[Row]:
    """Both cases; ``server``: the SFTP container, whose CPU time is read around each command."""
    label = f"{files} files x 100 KiB"
    print(f"  {label}:")
    small = _case(connection, lambda root: small_files(root, files), workdir, server)
    rows = [
        Row(AREA, f"{label}: `dvc push`", "s", small.push.seconds, RAW + " put -r", small.put),
        *_cpu_rows(label, "push", small.push),
        Row(AREA, f"{label}: `dvc pull` ({PULLED})", "s", small.pull.seconds,
            RAW + " get -r", small.get),
        *_cpu_rows(label, "pull", small.pull),
        Row(AREA, f"{label}: `dvc fetch` ({FETCHED})", "s", small.fetch.seconds,
            RAW + " get -r", small.get),
    ]  # fmt: skip
    label = f"one {big_mib} MiB file"
    print(f"  {label}:")
    big = _case(
        connection, lambda root: write_random(root / "big.bin", big_mib * MIB), workdir, server
    )
    return [
        *rows,
        Row(AREA, f"{label}: `dvc push`", "MiB/s", big_mib / big.push.seconds,
            RAW + " put -r", big_mib / big.put, goal=GOAL),
        Row(AREA, f"{label}: `dvc pull` ({PULLED})", "MiB/s", big_mib / big.pull.seconds,
            RAW + " get -r", big_mib / big.get),
        Row(AREA, f"{label}: `dvc fetch` ({FETCHED})", "MiB/s", big_mib / big.fetch.seconds,
            RAW + " get -r", big_mib / big.get, goal=GOAL),
    ]  # fmt: skip
