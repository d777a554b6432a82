"""DVC area of `make bench`: `dvc push` and `dvc pull` (cache and workspace emptied first) to the
person's DVC remote, set up as the README tells data scientists, beside raw OpenSSH `sftp put -r`
/ `get -r` of the same tree to the same SFTP server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path

from bench.report import Row
from bench.transfer import MIB, remote_root, remove_remote, sftp, timed, write_random

AREA = "dvc"
RAW = "raw OpenSSH `sftp`"
VENV_BIN = Path(sys.executable).parent
SMALL_FILES = 1000
SMALL_SIZE = 100 * 1024


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


def _case(connection: Mapping[str, str], label: str, make_data, workdir: Path) -> list[Row]:
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
        push = timed(lambda: run("dvc", "push", "-q"))
        shutil.rmtree(repo / "data")
        shutil.rmtree(repo / ".dvc" / "cache")
        pull = timed(lambda: run("dvc", "pull", "-q"))
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
    print(f"  {label}: dvc push {push:.1f} s / pull {pull:.1f} s, "
          f"sftp put -r {put:.1f} s / get -r {get:.1f} s")  # fmt: skip
    return [
        Row(AREA, f"{label}: `dvc push`", "s", push, RAW + " put -r", put),
        Row(AREA, f"{label}: `dvc pull` (empty cache)", "s", pull, RAW + " get -r", get),
    ]


def small_files(root: Path, count: int = SMALL_FILES) -> None:
    """``count`` random files of 100 KiB in 10 folders."""
    for index in range(count):
        write_random(root / f"part-{index % 10}" / f"file-{index:05d}.bin", SMALL_SIZE)


def run(
    connection: Mapping[str, str], big_mib: int, workdir: Path, files: int = SMALL_FILES
) -> list[Row]:
    return _case(
        connection, f"{files} files x 100 KiB", lambda root: small_files(root, files), workdir
    ) + _case(
        connection,
        f"one {big_mib} MiB file",
        lambda root: write_random(root / "big.bin", big_mib * MIB),
        workdir,
    )
