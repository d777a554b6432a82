"""Build the three service images without any container registry.

The base image of each image's Debian release is used if present, pulled if a registry answers,
else built once from Debian packages (see base_image.py): bookworm for MLflow and SFTP, the
release of its major for PostgreSQL (versions.env POSTGRESQL_DEBIAN_SUITES; POSTGRESQL_MAJOR=N
builds <prefix>/postgresql:N). BASE_IMAGE overrides the bookworm base only.

The MLflow image installs images/mlflow/requirements.lock; at another MLflow version
(MLFLOW_VERSION=…, e.g. to rehearse an upgrade from an older release) a lock resolved for that
version (lock.mlflow_lock, cached by version). Extra CA certificates of the build host are
handed to the MLflow build so pip works behind TLS-intercepting proxies and private mirrors.

Builds from one work tree take turns (BUILD_TURNS): each stages files into the build context
(.build-ca/, .build-lock/) that another would replace under it, and two `make deploy` of
different environments may both build missing images.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from .base_image import SUITE, ensure_base_image, registry_base_image
from .engine import ensure_engine
from .lock import mlflow_lock
from .shell import log, run, taking_turns
from .versions import IMAGE_NAMES, REPO_ROOT, ImageSet, image_set, pinned_mlflow_version

IMAGES_DIR = REPO_ROOT / "images"
HOST_EXTRA_CA_DIR = Path("/usr/local/share/ca-certificates")
# Where an MLflow build at another version finds its lock (inside the build context).
STAGED_LOCK = IMAGES_DIR / "mlflow" / ".build-lock" / "requirements.lock"
BUILD_TURNS = REPO_ROOT / "build" / "image-build.lock"


def stage_extra_ca(source: Path, target: Path) -> int:
    """Copy *.crt from ``source`` into the build context; return how many were copied."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    count = 0
    if source.is_dir():
        for cert in sorted(source.rglob("*.crt")):
            shutil.copyfile(cert, target / cert.name)
            count += 1
    return count


def stage_mlflow_lock(version: str) -> dict[str, str]:
    """Build arguments of the MLflow image at ``version``: none at the pin; else the lock of
    that version, copied into the build context."""
    if version == pinned_mlflow_version():
        return {}
    STAGED_LOCK.parent.mkdir(exist_ok=True)
    shutil.copyfile(mlflow_lock(version), STAGED_LOCK)
    return {"REQUIREMENTS_LOCK": str(STAGED_LOCK.relative_to(IMAGES_DIR))}


def build_image(
    images: ImageSet, name: str, base_image: str, extra_args: dict[str, str] | None = None
) -> float:
    args = [
        "docker", "build",
        "--file", str(IMAGES_DIR / name / "Dockerfile"),
        "--tag", images.ref(name),
        "--build-arg", f"BASE_IMAGE={base_image}",
        "--label", f"org.opencontainers.image.version={images.tag(name)}",
        "--label", "org.opencontainers.image.source=mlops-kit",
    ]  # fmt: skip
    for key, value in {**images.build_args(name), **(extra_args or {})}.items():
        args += ["--build-arg", f"{key}={value}"]
    if os.environ.get("NO_CACHE"):
        # A rebuild from scratch picks up Debian security updates and new wheels' builds.
        args.append("--no-cache")
    if index := os.environ.get("PIP_INDEX_URL", ""):
        args += ["--build-arg", f"PIP_INDEX_URL={index}"]
    started = time.monotonic()
    # The classic builder needs no buildx plugin and works with every engine from 20.10 on.
    run([*args, str(IMAGES_DIR)], env={**os.environ, "DOCKER_BUILDKIT": "0"})
    return time.monotonic() - started


def base_for(suite: str, bases: dict[str, str]) -> str:
    """The base image of a Debian suite (BASE_IMAGE overrides bookworm's), provided once."""
    if suite not in bases:
        requested = (os.environ.get("BASE_IMAGE") if suite == SUITE else "") or (
            registry_base_image(suite)
        )
        bases[suite] = ensure_base_image(requested, suite)
        log(f"base image of Debian {suite}: {bases[suite]}")
    return bases[suite]


def build_all(
    names: tuple[str, ...] = IMAGE_NAMES,
    mlflow_version: str | None = None,
    postgresql_major: str | None = None,
) -> ImageSet:
    """Build ``names``; MLflow at ``mlflow_version`` (None: MLFLOW_VERSION, else the pin),
    PostgreSQL at ``postgresql_major`` (None: POSTGRESQL_MAJOR, else versions.env)."""
    images = image_set(mlflow_version=mlflow_version, postgresql_major=postgresql_major)
    suites = {name: images.debian_suite(name) for name in names}  # fails before any build
    ensure_engine()
    extra_ca = Path(os.environ.get("EXTRA_CA_DIR") or HOST_EXTRA_CA_DIR)
    with taking_turns(BUILD_TURNS, "another image build of this work tree"):
        copied = stage_extra_ca(extra_ca, IMAGES_DIR / "mlflow" / ".build-ca")
        log(f"{copied} extra CA certificate(s) from {extra_ca}")
        bases: dict[str, str] = {}
        for name in names:
            extra = stage_mlflow_lock(images.mlflow_version) if name == "mlflow" else {}
            seconds = build_image(images, name, base_for(suites[name], bases), extra)
            log(f"built {images.ref(name)} on Debian {suites[name]} in {seconds:.0f}s")
    return images
