"""Image names and tags, read from images/versions.env (the single source of truth)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
VERSIONS_FILE = REPO_ROOT / "images" / "versions.env"
IMAGE_NAMES = ("postgresql", "sftp", "mlflow")


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


@dataclass(frozen=True)
class ImageSet:
    prefix: str
    mlflow_version: str
    postgresql_major: str
    sftp_version: str

    def tag(self, name: str) -> str:
        return {
            "mlflow": self.mlflow_version,
            "postgresql": self.postgresql_major,
            "sftp": self.sftp_version,
        }[name]

    def ref(self, name: str) -> str:
        return f"{self.prefix}/{name}:{self.tag(name)}"

    def build_args(self, name: str) -> dict[str, str]:
        return {"postgresql": {"POSTGRESQL_MAJOR": self.postgresql_major}}.get(name, {})


def image_set(prefix: str | None = None, versions_file: Path = VERSIONS_FILE) -> ImageSet:
    """The images of versions.env; the prefix from the argument, else (None) the environment's
    IMAGE_PREFIX (two checkouts sharing one Docker engine), else ("" too) versions.env."""
    values = read_env_file(versions_file)
    if prefix is None:
        prefix = os.environ.get("IMAGE_PREFIX")
    return ImageSet(
        prefix=prefix or values["IMAGE_PREFIX"],
        mlflow_version=values["MLFLOW_VERSION"],
        postgresql_major=values["POSTGRESQL_MAJOR"],
        sftp_version=values["SFTP_VERSION"],
    )
