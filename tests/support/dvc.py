"""Run the stock `dvc` and `git` from the project's virtualenv, as a data scientist would."""

from __future__ import annotations

import os
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
