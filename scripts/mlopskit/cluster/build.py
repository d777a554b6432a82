"""Server binaries of Kubernetes 1.20 from Debian bookworm's ``kubernetes`` source package.

No registry carries a Kubernetes server binary or image that this machine may fetch, so the
binaries are compiled from ``apt-get source kubernetes`` with bookworm's ``golang-go``, the way
``debian/rules`` does (upstream ``make`` in GOPATH mode), after two changes this machine needs
(see ``PATCHES``). The result lands in ``CACHE_ROOT/<inputs hash>/bin`` outside the work tree, so
a second ``make cluster`` and every fresh clone on the same machine reuse it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ..engine import apt_get, apt_install
from ..shell import CommandError, log, run, taking_turns
from . import config

# Bump when the recipe below changes in a way the other inputs do not show.
RECIPE = 1
SOURCE_PACKAGE = "kubernetes"
BUILD_PACKAGES = (
    "golang-go",
    "golang-github-modern-go-reflect2-dev",
    "dpkg-dev",
    "make",
    "gcc",
    "libc6-dev",
    "rsync",
)
COMPONENTS = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
)
REFLECT2_VENDOR = "vendor/github.com/modern-go/reflect2"
REFLECT2_DEBIAN = Path("/usr/share/gocode/src/github.com/modern-go/reflect2")


@dataclass(frozen=True)
class Patch:
    """Replace ``old`` by ``new`` exactly once in ``path``; ``why`` is for the reader."""

    path: str
    old: str
    new: str
    why: str


PATCHES = (
    # This machine refuses negative oom_score_adj (no CAP_SYS_RESOURCE in the bounding set):
    # every sandbox would fail with "can't get final child's PID from pipe: EOF".
    Patch(
        "pkg/kubelet/dockershim/docker_sandbox.go",
        "defaultSandboxOOMAdj int = -998",
        "defaultSandboxOOMAdj int = 0",
        "sandboxes get oom_score_adj 0 instead of -998",
    ),
    Patch(
        "pkg/kubelet/qos/policy.go",
        "guaranteedOOMScoreAdj int = -997",
        "guaranteedOOMScoreAdj int = 0",
        "Guaranteed pods get oom_score_adj 0 instead of -997",
    ),
    Patch(
        "pkg/kubelet/qos/policy.go",
        "KubeletOOMScoreAdj int = -999",
        "KubeletOOMScoreAdj int = 0",
        "critical pods and the kubelet get 0 instead of -999",
    ),
)


def _dpkg_version(package: str) -> str:
    out = run(["dpkg-query", "-W", "-f=${Version}", package], capture=True, check=False, quiet=True)
    return out.stdout.decode().strip()


def _source_version() -> str:
    out = run(["apt-cache", "showsrc", SOURCE_PACKAGE], capture=True, check=False, quiet=True)
    versions = [
        line.split(":", 1)[1].strip()
        for line in out.stdout.decode().splitlines()
        if line.startswith("Version:")
    ]
    if not versions:
        raise CommandError(
            f"apt knows no source package {SOURCE_PACKAGE!r}: a deb-src entry is missing "
            "(mlopskit cluster build adds one next to the host's deb sources)"
        )
    return sorted(versions, key=_version_key)[-1]


def _version_key(version: str) -> tuple[int, str]:
    # Only used to pick among the versions of one suite; dpkg compares for real.
    newest = subprocess.run(
        ["dpkg", "--compare-versions", version, "gt", "0"], check=False
    ).returncode
    return (newest, version)


def enable_sources() -> None:
    """Add ``deb-src`` twins of the host's deb822 sources (same mirrors), then update."""
    added = False
    for source in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        if source.name.startswith("mlops-kit-src-"):
            continue
        text = source.read_text()
        if "Types: deb\n" not in text or "deb-src" in text:
            continue
        twin = source.with_name(f"mlops-kit-src-{source.name}")
        if not twin.exists():
            twin.write_text(text.replace("Types: deb\n", "Types: deb-src\n"))
            added = True
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        lines = [ln for ln in legacy.read_text().splitlines() if ln.startswith("deb ")]
        twin = Path("/etc/apt/sources.list.d/mlops-kit-src-legacy.list")
        if lines and not twin.exists():
            twin.write_text("".join(f"deb-src {ln[4:]}\n" for ln in lines))
            added = True
    if added or not _has_source():
        apt_get("update", "-qq")


def _has_source() -> bool:
    out = run(["apt-cache", "showsrc", SOURCE_PACKAGE], capture=True, check=False, quiet=True)
    return b"Version:" in out.stdout


def inputs() -> dict[str, object]:
    """Everything the binaries depend on; its hash names the cache directory."""
    return {
        "recipe": RECIPE,
        "source": f"{SOURCE_PACKAGE} {_source_version()}",
        "golang-go": _dpkg_version("golang-go"),
        "reflect2": _dpkg_version("golang-github-modern-go-reflect2-dev"),
        "patches": [[p.path, p.old, p.new] for p in PATCHES],
        "components": list(COMPONENTS),
    }


def inputs_hash(spec: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def apply_patches(tree: Path) -> None:
    for patch in PATCHES:
        path = tree / patch.path
        text = path.read_text()
        if text.count(patch.old) != 1:
            raise CommandError(f"{patch.path}: expected {patch.old!r} exactly once ({patch.why})")
        path.write_text(text.replace(patch.old, patch.new))
        log(f"patched {patch.path}: {patch.why}")
    # kube-apiserver 1.20 built with Go >= 1.18 crashes on the first custom resource: its
    # vendored reflect2 v1.0.1 predates Go 1.18. Debian's package carries v1.0.2.
    vendored = tree / REFLECT2_VENDOR
    if not (REFLECT2_DEBIAN / "go_above_118.go").exists():
        raise CommandError(f"{REFLECT2_DEBIAN} lacks reflect2 >= 1.0.2 (go_above_118.go)")
    shutil.rmtree(vendored)
    shutil.copytree(REFLECT2_DEBIAN, vendored, ignore=shutil.ignore_patterns("*_test.go"))
    log(f"replaced {REFLECT2_VENDOR} by {REFLECT2_DEBIAN} (v1.0.2)")


def _build_tree(work: Path, out: Path) -> None:
    src_dir = work / "src"
    src_dir.mkdir(parents=True)
    apt_get("source", "--download-only", SOURCE_PACKAGE, cwd=src_dir)
    dsc = next(src_dir.glob("*.dsc"))
    tree = work / "kubernetes"
    run(["dpkg-source", "-x", str(dsc), str(tree)])
    apply_patches(tree)
    gopath = tree / ".go"
    (gopath / "src" / "k8s.io").mkdir(parents=True)
    (gopath / "src" / "k8s.io" / "kubernetes").symlink_to("../../..")
    env = {
        **os.environ,
        "GOPATH": str(gopath),
        "PATH": f"/usr/lib/go/bin:{os.environ['PATH']}",
        "CGO_ENABLED": "0",
        "GOCACHE": str(config.CACHE_ROOT / "gocache"),
        "HOME": str(work),
    }
    started = time.monotonic()
    run(["make", "generated_files"], cwd=tree, env=env)
    log(f"generated files in {time.monotonic() - started:.0f}s")
    what = " ".join(f"cmd/{c}" for c in COMPONENTS)
    run(["make", f"WHAT={what}"], cwd=tree, env=env)
    bin_dir = out / "bin"
    bin_dir.mkdir(parents=True)
    for component in COMPONENTS:
        shutil.copy2(tree / "_output" / "bin" / component, bin_dir / component)
    # The pod sandbox ("pause") image: the source's own pause.c, static, in a FROM scratch image
    # built at start time (no registry has one for us).
    run(
        [
            "gcc", "-Os", "-static", "-o", str(bin_dir / "pause"),
            f"-DVERSION={config.PAUSE_VERSION}", str(tree / "build/pause/linux/pause.c"),
        ]
    )  # fmt: skip
    log(f"built {', '.join(COMPONENTS)} and pause in {time.monotonic() - started:.0f}s")


def cached_build() -> Path:
    """Return ``CACHE_ROOT/<hash>`` holding ``bin/``, building it first when missing."""
    missing = [p for p in BUILD_PACKAGES if not _dpkg_version(p)]
    if missing:
        apt_install(*missing)
    enable_sources()
    spec = inputs()
    out = config.CACHE_ROOT / inputs_hash(spec)
    if (out / "complete").exists():
        return out
    with taking_turns(config.CACHE_ROOT / "build.lock", "another build of the cluster binaries"):
        if (out / "complete").exists():
            return out
        log(f"building Kubernetes server binaries into {out} (about 12 min on 2 cores)")
        partial = out.with_name(out.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        work = config.CACHE_ROOT / "work"
        shutil.rmtree(work, ignore_errors=True)
        _build_tree(work, partial)
        (partial / "inputs.json").write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
        (partial / "complete").touch()
        shutil.rmtree(out, ignore_errors=True)
        partial.rename(out)
        shutil.rmtree(work, ignore_errors=True)
    return out
