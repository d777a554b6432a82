"""Build the three service images without any container registry.

The base image is used if present, pulled if a registry answers, else built once from Debian
packages (see base_image.py). Extra CA certificates of the build host are handed to the MLflow
build so pip works behind TLS-intercepting proxies and private mirrors.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from .base_image import ensure_base_image
from .engine import ensure_engine
from .shell import log, run
from .versions import IMAGE_NAMES, REPO_ROOT, ImageSet, image_set

IMAGES_DIR = REPO_ROOT / "images"
HOST_EXTRA_CA_DIR = Path("/usr/local/share/ca-certificates")


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


def build_image(images: ImageSet, name: str, base_image: str) -> float:
    args = [
        "docker", "build",
        "--file", str(IMAGES_DIR / name / "Dockerfile"),
        "--tag", images.ref(name),
        "--build-arg", f"BASE_IMAGE={base_image}",
        "--label", f"org.opencontainers.image.version={images.tag(name)}",
        "--label", "org.opencontainers.image.source=mlops-kit",
    ]  # fmt: skip
    for key, value in images.build_args(name).items():
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


def build_all(names: tuple[str, ...] = IMAGE_NAMES) -> ImageSet:
    ensure_engine()
    images = image_set()
    base = ensure_base_image(os.environ.get("BASE_IMAGE") or "debian:bookworm-slim")
    extra_ca = Path(os.environ.get("EXTRA_CA_DIR") or HOST_EXTRA_CA_DIR)
    copied = stage_extra_ca(extra_ca, IMAGES_DIR / "mlflow" / ".build-ca")
    log(f"base image {base}; {copied} extra CA certificate(s) from {extra_ca}")
    for name in names:
        seconds = build_image(images, name, base)
        log(f"built {images.ref(name)} in {seconds:.0f}s")
    return images
