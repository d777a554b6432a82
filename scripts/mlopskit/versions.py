"""Image names and tags, read from images/versions.env (the single source of truth)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .shell import CommandError

REPO_ROOT = Path(__file__).resolve().parents[2]
VERSIONS_FILE = REPO_ROOT / "images" / "versions.env"
IMAGE_NAMES = ("postgresql", "sftp", "mlflow")
# A released MLflow (X.Y.Z): the tag of an MLflow image built at a version other than the pin.
MLFLOW_RELEASE = re.compile(r"^\d+\.\d+\.\d+$")


class VersionError(CommandError):
    """An MLflow version override that is not a release number."""


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


def image_set(
    prefix: str | None = None,
    versions_file: Path = VERSIONS_FILE,
    mlflow_version: str | None = None,
) -> ImageSet:
    """The images of versions.env; the prefix from the argument, else (None) the environment's
    IMAGE_PREFIX (two checkouts sharing one Docker engine), else ("" too) versions.env.

    The MLflow version the same way: the argument, else (None) the environment's MLFLOW_VERSION
    (`make images MLFLOW_VERSION=3.16.1`: an older release, e.g. to rehearse an upgrade from
    it), else ("" too) the pin of versions.env.
    """
    values = read_env_file(versions_file)
    if prefix is None:
        prefix = os.environ.get("IMAGE_PREFIX")
    if mlflow_version is None:
        mlflow_version = os.environ.get("MLFLOW_VERSION", "").strip()
    if mlflow_version and not MLFLOW_RELEASE.match(mlflow_version):
        raise VersionError(f"MLFLOW_VERSION={mlflow_version!r} must be a release like 3.16.1")
    return ImageSet(
        prefix=prefix or values["IMAGE_PREFIX"],
        mlflow_version=mlflow_version or values["MLFLOW_VERSION"],
        postgresql_major=values["POSTGRESQL_MAJOR"],
        sftp_version=values["SFTP_VERSION"],
    )


def pinned_mlflow_version(versions_file: Path = VERSIONS_FILE) -> str:
    """The MLflow version images/versions.env pins (what requirements.lock installs)."""
    return read_env_file(versions_file)["MLFLOW_VERSION"]
