"""Run the stock `dvc` and `git` from the project's virtualenv, as a data scientist would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


def run_dvc(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """``args`` (a `dvc` or `git` command line) in ``cwd``, with ``env`` added to ours, no
    analytics, and a git identity."""
    full_env = {
        **os.environ,
        **(env or {}),
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "tests", "GIT_AUTHOR_EMAIL": "tests@example.invalid",
        "GIT_COMMITTER_NAME": "tests", "GIT_COMMITTER_EMAIL": "tests@example.invalid",
    }  # fmt: skip
    return subprocess.run(
        list(args), cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout,
        check=False,
    )  # fmt: skip


def write_s3_credentials(path: Path, access: str, secret: str) -> Path:
    """A person's own S3 keys as an AWS credentials file (0600), which the remote's
    `credentialpath` names: never a `dvc` argument, which every user of the machine can read
    (and which a secret starting with "-" would break)."""
    path.write_text(f"[default]\naws_access_key_id = {access}\naws_secret_access_key = {secret}\n")
    path.chmod(0o600)
    return path


def use_s3_remote(
    project: Path,
    credentials: Path,
    url: str = "",
    endpoint: str = "",
    env: Mapping[str, str] | None = None,
) -> None:
    """Point ``project`` at an S3 remote as the docs say: with ``url``, the remote `store`
    (and its ``endpoint``) in git; always the person's ``credentials`` in the git-ignored
    .dvc/config.local."""
    steps: list[tuple[str, ...]] = []
    local = ("dvc", "remote", "modify", "--local", "store")
    if url:
        steps.append(("dvc", "remote", "add", "-d", "store", url))
    if endpoint:
        steps.append(("dvc", "remote", "modify", "store", "endpointurl", endpoint))
    steps.append((*local, "credentialpath", str(credentials)))
    for step in steps:
        result = run_dvc(*step, cwd=project, env=env, timeout=120)
        assert result.returncode == 0, result.stderr


def init_project(path: Path, env: Mapping[str, str] | None = None) -> Path:
    """A new git + DVC project at ``path``."""
    path.mkdir(parents=True)
    for step in (("git", "init", "-q"), ("dvc", "init", "-q")):
        result = run_dvc(*step, cwd=path, env=env, timeout=120)
        assert result.returncode == 0, result.stderr
    return path


def clone_without_data(project: Path, where: Path, *tracked: str) -> Path:
    """What `git clone` of ``project`` gives at ``where``: no DVC cache, no local config
    (keys), and none of the ``tracked`` data files."""
    shutil.copytree(project, where, ignore=shutil.ignore_patterns("cache", "tmp", "config.local"))
    for name in tracked:
        (where / name).unlink()
    return where
