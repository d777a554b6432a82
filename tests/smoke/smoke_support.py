"""Constants and small helpers shared by the smoke tests (importable, unlike conftest)."""

from __future__ import annotations

import hashlib
from pathlib import Path

ARTIFACT_BYTES = 50 * 1024 * 1024
ALIAS = "champion"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
