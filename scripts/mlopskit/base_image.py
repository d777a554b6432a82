"""Provide a Debian base image per release (suite): use it if present, pull it, or build it
with debootstrap.

Air-gapped sites have no registry but do have a Debian mirror; the mirror is read from the
host's apt sources so the same code works behind any mirror, for any suite it carries (the
PostgreSQL image follows its major's suite, e.g. 17 from trixie: versions.env
POSTGRESQL_DEBIAN_SUITES). Each suite's image is built once and tagged
mlops-kit/debian-base:<suite>; later builds reuse it, and Docker's layer cache the rest.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from .engine import apt_install
from .shell import CommandError, log, run, succeeds

# The image we build ourselves when the requested base cannot be had, per suite.
LOCAL_BASE_REPOSITORY = "mlops-kit/debian-base"
SUITE = "bookworm"
LOCAL_BASE_IMAGE = f"{LOCAL_BASE_REPOSITORY}:{SUITE}"


def local_base_image(suite: str) -> str:
    return f"{LOCAL_BASE_REPOSITORY}:{suite}"


def registry_base_image(suite: str) -> str:
    """The registry image a suite's images would start from."""
    return f"debian:{suite}-slim"


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


def _debootstrap(mirror: str, tag: str, suite: str = SUITE) -> None:
    if shutil.which("debootstrap") is None:
        apt_install("debootstrap")
    if not Path(f"/usr/share/debootstrap/scripts/{suite}").exists():
        raise CommandError(
            f"this host's debootstrap does not know Debian {suite}; upgrade debootstrap "
            "(apt-get install debootstrap from a newer release) or provide "
            f"{registry_base_image(suite)}"
        )
    with tempfile.TemporaryDirectory(prefix="mlops-kit-rootfs-") as rootfs:
        log(f"building {tag} with debootstrap from {mirror}")
        run(["debootstrap", "--variant=minbase", suite, rootfs, mirror], capture=True)
        # Image layers need no apt cache or package lists; the Dockerfiles update them.
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (Path(rootfs) / leftover).glob("*"):
                if entry.is_file():
                    entry.unlink()
        tar = run(["tar", "-C", rootfs, "-c", "."], capture=True, quiet=True)
        run(["docker", "import", "-", tag], input_bytes=tar.stdout, capture=True)


def ensure_base_image(requested: str, suite: str = SUITE) -> str:
    """Return an image reference usable as BASE_IMAGE for Debian ``suite``, building one if
    need be: ``requested`` if present or pullable, else mlops-kit/debian-base:<suite>."""
    local = local_base_image(suite)
    if succeeds(["docker", "image", "inspect", requested]):
        return requested
    log(f"pulling {requested}")
    if succeeds(["docker", "pull", requested]):
        return requested
    if succeeds(["docker", "image", "inspect", local]):
        log(f"{requested} cannot be pulled; reusing {local}")
        return local
    log(f"{requested} cannot be pulled; building {local} from Debian packages")
    _debootstrap(host_debian_mirror(), local, suite)
    return local
