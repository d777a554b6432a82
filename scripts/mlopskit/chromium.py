"""Find Debian's headless-capable Chromium, installing it on root Debian hosts when missing."""

from __future__ import annotations

import os
import shutil

from .engine import _is_debian_like, apt_install
from .shell import CommandError, log

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    for name in CANDIDATES:
        if path := shutil.which(name):
            return path
    return None


def ensure_chromium() -> str:
    """Return the Chromium executable; apt-get install it as root on Debian/Ubuntu."""
    if path := find_chromium():
        return path
    if os.geteuid() != 0 or not _is_debian_like():
        raise CommandError(
            "Chromium is missing (the smoke suite screenshots the MLflow UI with it). Install "
            "Debian's `chromium` package (`sudo apt-get install chromium`), or run as root on "
            "Debian/Ubuntu and this tool installs it"
        )
    log("installing Debian's chromium package for the UI smoke test")
    apt_install("chromium", recommends=False)
    if path := find_chromium():
        return path
    raise CommandError("apt-get installed chromium but no chromium executable is on PATH")
