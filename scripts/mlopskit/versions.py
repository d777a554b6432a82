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
POSTGRESQL_MAJOR_PATTERN = re.compile(r"^[1-9][0-9]?$")
# The Debian release of the MLflow and SFTP images (and of PostgreSQL majors it ships).
DEFAULT_SUITE = "bookworm"


class VersionError(CommandError):
    """A version override that is not a release number, or a major no Debian suite ships."""


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
    # PostgreSQL major -> the Debian suite it comes from (versions.env POSTGRESQL_DEBIAN_SUITES).
    postgresql_suites: tuple[tuple[str, str], ...] = ()

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

    def debian_suite(self, name: str) -> str:
        """The Debian release image ``name`` is built on: PostgreSQL's follows its major."""
        if name != "postgresql":
            return DEFAULT_SUITE
        suites = dict(self.postgresql_suites)
        if self.postgresql_major not in suites:
            known = ", ".join(f"{m} ({s})" for m, s in self.postgresql_suites)
            raise VersionError(
                f"PostgreSQL {self.postgresql_major} comes from no Debian release that "
                f"images/versions.env POSTGRESQL_DEBIAN_SUITES names (it knows {known}); choose "
                "one of those majors, or add MAJOR:SUITE there for the Debian release that "
                f"ships postgresql-{self.postgresql_major}"
            )
        return suites[self.postgresql_major]


def parse_suites(raw: str) -> tuple[tuple[str, str], ...]:
    """POSTGRESQL_DEBIAN_SUITES ("15:bookworm 17:trixie") as ((major, suite), ...)."""
    pairs = []
    for item in raw.split():
        major, sep, suite = item.partition(":")
        if not sep or not POSTGRESQL_MAJOR_PATTERN.match(major) or not suite.isalpha():
            raise VersionError(
                f"images/versions.env POSTGRESQL_DEBIAN_SUITES: {item!r} is not MAJOR:SUITE "
                "(e.g. 17:trixie)"
            )
        pairs.append((major, suite))
    return tuple(pairs)


def checked_postgresql_major(value: str, source: str) -> str:
    value = value.strip()
    if not POSTGRESQL_MAJOR_PATTERN.match(value):
        raise VersionError(f"{source}={value!r} must be a PostgreSQL major version like 17")
    return value


def image_set(
    prefix: str | None = None,
    versions_file: Path = VERSIONS_FILE,
    mlflow_version: str | None = None,
    postgresql_major: str | None = None,
) -> ImageSet:
    """The images of versions.env; the prefix from the argument, else (None) the environment's
    IMAGE_PREFIX (two checkouts sharing one Docker engine), else ("" too) versions.env.

    The MLflow version the same way: the argument, else (None) the environment's MLFLOW_VERSION
    (`make images MLFLOW_VERSION=3.16.1`: an older release, e.g. to rehearse an upgrade from
    it), else ("" too) the pin of versions.env. The PostgreSQL major likewise (POSTGRESQL_MAJOR).
    """
    values = read_env_file(versions_file)
    if prefix is None:
        prefix = os.environ.get("IMAGE_PREFIX")
    if mlflow_version is None:
        mlflow_version = os.environ.get("MLFLOW_VERSION", "").strip()
    if mlflow_version and not MLFLOW_RELEASE.match(mlflow_version):
        raise VersionError(f"MLFLOW_VERSION={mlflow_version!r} must be a release like 3.16.1")
    if postgresql_major is None:
        postgresql_major = os.environ.get("POSTGRESQL_MAJOR", "").strip()
    if postgresql_major:
        postgresql_major = checked_postgresql_major(postgresql_major, "POSTGRESQL_MAJOR")
    return ImageSet(
        prefix=prefix or values["IMAGE_PREFIX"],
        mlflow_version=mlflow_version or values["MLFLOW_VERSION"],
        postgresql_major=postgresql_major or values["POSTGRESQL_MAJOR"],
        sftp_version=values["SFTP_VERSION"],
        postgresql_suites=parse_suites(values.get("POSTGRESQL_DEBIAN_SUITES", "")),
    )


def pinned_mlflow_version(versions_file: Path = VERSIONS_FILE) -> str:
    """The MLflow version images/versions.env pins (what requirements.lock installs)."""
    return read_env_file(versions_file)["MLFLOW_VERSION"]
