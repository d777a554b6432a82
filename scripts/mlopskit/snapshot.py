"""Incremental copies of the SFTP volume (artifacts, DVC objects) into a backup, and back.

A backup holds the volume as a plain tree, sftp/, next to its manifest. A file whose size and
modification time match the previous backup's entry is hard-linked to that backup's copy
(like `rsync --link-dest`); only new and changed files travel out of the container, as one
tar stream. Every snapshot is complete on its own, and deleting an old one frees only what no
other snapshot shares. Files are stored 0600; their real modes and times live in the manifest.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .docker_env import EXEC_TIMEOUT_S, ExecTarget, docker_exec, exec_argv, target_name
from .shell import CommandError

TREE = "sftp"
# type, size, mtime, octal mode, symlink target, path relative to the root; NUL-terminated.
# lost+found (the root of an ext4 volume, as many PVCs are) belongs to root and is no data.
LIST_SCRIPT = (
    r'cd "$1" && exec find . -mindepth 1 -path ./lost+found -prune -o '
    r'-printf "%y\t%s\t%T@\t%m\t%l\t%P\0"'
)
TAR_OUT_SCRIPT = 'cd "$1" && exec tar --null --no-recursion -T - -cf -'
# The volume's root belongs to root: replace its children, never the root itself.
TAR_IN_SCRIPT = (
    'find "$1" -mindepth 1 -maxdepth 1 ! -name lost+found -exec rm -rf {} + && '
    'exec tar -C "$1" --no-same-owner -xpf -'
)


@dataclass(frozen=True)
class Entry:
    kind: str  # "f" file, "d" directory, "l" symlink
    size: int
    mtime: str
    mode: int
    target: str
    path: str


def safe_relative(path: str) -> str:
    """A relative path without `..` or a root; anything else is refused."""
    pure = PurePosixPath(path)
    if not path or pure.is_absolute() or ".." in pure.parts:
        raise CommandError(f"refusing the path {path!r} from the SFTP volume")
    return str(pure)


def parse_listing(raw: bytes) -> list[Entry]:
    entries = []
    for record in raw.split(b"\0"):
        if not record:
            continue
        kind, size, mtime, mode, target, path = record.decode("utf-8", "surrogateescape").split(
            "\t", 5
        )
        if kind not in {"f", "d", "l"}:
            continue  # sockets, FIFOs: nothing a backup can hold
        entries.append(Entry(kind, int(size), mtime, int(mode, 8), target, safe_relative(path)))
    return entries


def list_volume(container: ExecTarget, root: str) -> list[Entry]:
    with tempfile.TemporaryFile() as out:
        docker_exec(container, LIST_SCRIPT, root, stdout=out)  # type: ignore[arg-type]
        out.seek(0)
        return parse_listing(out.read())


def _unchanged(entry: Entry, previous: dict | None, previous_dir: Path | None) -> bool:
    return (
        previous is not None
        and previous_dir is not None
        and previous.get("bytes") == entry.size
        and previous.get("mtime") == entry.mtime
        and (previous_dir / TREE / entry.path).is_file()
    )


def _file_record(entry: Entry, sha256: str) -> dict:
    return {"bytes": entry.size, "sha256": sha256, "mode": entry.mode, "mtime": entry.mtime}


def copy_out(
    container: ExecTarget, root: str, target: Path, previous: dict, previous_dir: Path | None
) -> tuple[dict, dict, dict, int]:
    """Copy the volume into target/sftp/; return (files, dirs, links, bytes transferred).

    `previous` is the previous backup's "files" map (keys "sftp/<path>").
    """
    tree = target / TREE
    tree.mkdir(mode=0o700)
    entries = list_volume(container, root)
    files: dict = {}
    dirs: dict = {}
    links: dict = {}
    wanted: dict[str, Entry] = {}
    for entry in entries:
        key = f"{TREE}/{entry.path}"
        if entry.kind == "d":
            (tree / entry.path).mkdir(mode=0o700, parents=True, exist_ok=True)
            dirs[key] = {"mode": entry.mode, "mtime": entry.mtime}
        elif entry.kind == "l":
            links[key] = entry.target
        elif _unchanged(entry, previous.get(key), previous_dir):
            (tree / entry.path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.link(previous_dir / key, tree / entry.path)  # type: ignore[operator]
            files[key] = _file_record(entry, previous[key]["sha256"])
        else:
            wanted[entry.path] = entry
    if wanted:
        files.update(_fetch(container, root, tree, wanted))
    return files, dirs, links, sum(entry.size for entry in wanted.values())


def _fetch(container: ExecTarget, root: str, tree: Path, wanted: dict[str, Entry]) -> dict:
    """Stream the wanted files out of the container as tar; write and hash each one."""
    names = b"".join(f"./{path}".encode("utf-8", "surrogateescape") + b"\0" for path in wanted)
    command = [*exec_argv(container), "sh", "-c", TAR_OUT_SCRIPT, "sh", root]
    files: dict = {}
    with tempfile.TemporaryFile() as errors, tempfile.TemporaryFile() as listing:
        listing.write(names)
        listing.seek(0)
        process = subprocess.Popen(command, stdin=listing, stdout=subprocess.PIPE, stderr=errors)
        assert process.stdout is not None
        with tarfile.open(fileobj=process.stdout, mode="r|") as archive:
            for member in archive:
                path = safe_relative(member.name.removeprefix("./"))
                source = archive.extractfile(member) if member.isfile() else None
                if path not in wanted or source is None:
                    continue
                destination = tree / path
                destination.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                digest = hashlib.sha256()
                with open(destination, "xb", opener=private_opener) as out:
                    for chunk in iter(lambda: source.read(1 << 20), b""):  # noqa: B023
                        digest.update(chunk)
                        out.write(chunk)
                files[f"{TREE}/{path}"] = _file_record(wanted[path], digest.hexdigest())
        returncode = process.wait(timeout=EXEC_TIMEOUT_S)
        errors.seek(0)
        if returncode != 0:
            message = errors.read().decode(errors="replace").strip()[-1500:]
            where = target_name(container)
            raise CommandError(f"copying the SFTP data out of {where} failed: {message}")
    if missing := sorted(set(wanted) - {key.removeprefix(f"{TREE}/") for key in files}):
        raise CommandError(f"{len(missing)} file(s) vanished during the backup, e.g. {missing[0]}")
    return files


def private_opener(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)


def copy_in(container: ExecTarget, root: str, backup_dir: Path, manifest: dict) -> None:
    """Replace the volume's contents by the backup's tree, modes and times included."""
    command = [*exec_argv(container), "sh", "-c", TAR_IN_SCRIPT, "sh", root]
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=errors)
        assert process.stdin is not None
        try:
            with tarfile.open(fileobj=process.stdin, mode="w|", format=tarfile.PAX_FORMAT) as out:
                _write_members(out, backup_dir, manifest)
        finally:
            process.stdin.close()
        returncode = process.wait(timeout=EXEC_TIMEOUT_S)
        errors.seek(0)
        if returncode != 0:
            message = errors.read().decode(errors="replace").strip()[-1500:]
            where = target_name(container)
            raise CommandError(f"writing the SFTP data into {where} failed: {message}")


def _member(name: str, kind: bytes, mode: int, mtime: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name.removeprefix(f"{TREE}/"))
    info.type, info.mode, info.mtime = kind, mode, float(mtime)
    return info


def _write_members(out: tarfile.TarFile, backup_dir: Path, manifest: dict) -> None:
    # Directories first (parents before children), then files and links.
    for name, meta in sorted(manifest.get("dirs", {}).items()):
        out.addfile(_member(name, tarfile.DIRTYPE, meta["mode"], meta["mtime"]))
    for name, meta in sorted(manifest["files"].items()):
        if not name.startswith(f"{TREE}/"):
            continue
        info = _member(name, tarfile.REGTYPE, meta["mode"], meta["mtime"])
        info.size = meta["bytes"]
        with (backup_dir / name).open("rb") as handle:
            out.addfile(info, handle)
    for name, target in sorted(manifest.get("links", {}).items()):
        info = _member(name, tarfile.SYMTYPE, 0o777, "0")
        info.linkname = target
        out.addfile(info)


def remove_tree(path: Path) -> None:
    """Delete a backup directory (its files are 0600 and dirs 0700: owner may delete)."""
    shutil.rmtree(path)
