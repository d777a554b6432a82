"""Provide the Debian base image: use it if present, pull it, or build it with debootstrap.

Air-gapped sites have no registry but do have a Debian mirror; the mirror is read from the
host's apt sources so the same code works behind any mirror.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from .engine import apt_install
from .shell import CommandError, log, run, succeeds

# The image we build ourselves when the requested base cannot be had.
LOCAL_BASE_IMAGE = "mlops-kit/debian-base:bookworm"
SUITE = "bookworm"
APT_SOURCES = (Path("/etc/apt/sources.list.d"), Path("/etc/apt/sources.list"))


def host_debian_mirror(paths: tuple[Path, ...] = APT_SOURCES) -> str:
    """Return the first Debian (non-security) mirror URI from the host's apt sources."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in {".sources", ".list"})
        elif path.is_file():
            files.append(path)
    candidates: list[str] = []
    for file in files:
        for line in file.read_text(errors="replace").splitlines():
            line = line.strip()
            if line.startswith("#"):
                continue
            deb822 = re.match(r"URIs:\s*(.+)", line)
            one_line = re.match(r"deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+\S+", line)
            for match in (deb822, one_line):
                if match:
                    candidates += match.group(1).split()
    for uri in candidates:
        if "security" not in uri:
            return uri
    raise CommandError(
        "no Debian mirror found in /etc/apt/sources.list{,.d}; set BASE_IMAGE to an image "
        "you have, or configure apt first"
    )


def _debootstrap(mirror: str, tag: str) -> None:
    if shutil.which("debootstrap") is None:
        apt_install("debootstrap")
    with tempfile.TemporaryDirectory(prefix="mlops-kit-rootfs-") as rootfs:
        log(f"building {tag} with debootstrap from {mirror}")
        run(["debootstrap", "--variant=minbase", SUITE, rootfs, mirror], capture=True)
        # Image layers need no apt cache or package lists; the Dockerfiles update them.
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (Path(rootfs) / leftover).glob("*"):
                if entry.is_file():
                    entry.unlink()
        tar = run(["tar", "-C", rootfs, "-c", "."], capture=True, quiet=True)
        run(["docker", "import", "-", tag], input_bytes=tar.stdout, capture=True)


def ensure_base_image(requested: str) -> str:
    """Return an image reference usable as BASE_IMAGE, building one if need be."""
    if succeeds(["docker", "image", "inspect", requested]):
        return requested
    log(f"pulling {requested}")
    if succeeds(["docker", "pull", requested]):
        return requested
    if succeeds(["docker", "image", "inspect", LOCAL_BASE_IMAGE]):
        log(f"{requested} cannot be pulled; reusing {LOCAL_BASE_IMAGE}")
        return LOCAL_BASE_IMAGE
    log(f"{requested} cannot be pulled; building {LOCAL_BASE_IMAGE} from Debian packages")
    _debootstrap(host_debian_mirror(), LOCAL_BASE_IMAGE)
    return LOCAL_BASE_IMAGE
