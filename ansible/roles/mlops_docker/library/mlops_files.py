#!/usr/bin/python
"""Converge a set of directories and small files in one module run.

Why: a deploy writes some forty secret copies, access lines and connection files. As a loop of
`copy`/`file`/`template` tasks each item is its own module run (about 0.3 s), which made most of
a warm `make deploy`. One run here compares everything and writes only what differs, so a second
deploy still reports nothing changed.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: mlops_files
short_description: Directories, files, renames and removals of the mlops_docker role in one run
options:
  directories:
    description: Directories to create or correct (mode, and owner/group when given), parents first.
    type: list
    elements: dict
    default: []
  files:
    description: >-
      Files with their exact content, written atomically when content, mode or owner differ;
      with keep, an existing file is left as it is (generated secrets).
    type: list
    elements: dict
    default: []
  renames:
    description: >-
      src moves to dest when dest is missing; when both exist, src goes (dest is the one in use).
    type: list
    elements: dict
    default: []
  absent:
    description: Paths to remove (directories with their content).
    type: list
    elements: path
    default: []
  exclusive:
    description: >-
      Directories whose direct children must all be listed under files or directories (or hold
      one): any other child is removed.
    type: list
    elements: path
    default: []
"""

ENTRY_SPEC = {
    "path": {"type": "path", "required": True},
    "mode": {"type": "str", "required": True},
    "owner": {"type": "int"},
    "group": {"type": "int"},
}
FILE_SPEC = {
    **ENTRY_SPEC,
    "content": {"type": "str", "required": True, "no_log": True},
    "keep": {"type": "bool", "default": False},
}
RENAME_SPEC = {
    "src": {"type": "path", "required": True},
    "dest": {"type": "path", "required": True},
}


def _needs_attributes(st: os.stat_result, entry: dict) -> bool:
    return (
        stat.S_IMODE(st.st_mode) != int(entry["mode"], 8)
        or (entry.get("owner") is not None and st.st_uid != entry["owner"])
        or (entry.get("group") is not None and st.st_gid != entry["group"])
    )


def _set_attributes(path: str, entry: dict) -> None:
    owner, group = entry.get("owner"), entry.get("group")
    if owner is not None or group is not None:
        os.chown(path, -1 if owner is None else owner, -1 if group is None else group)
    os.chmod(path, int(entry["mode"], 8))


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _converge_renames(renames: list[dict], check: bool) -> list[str]:
    changed = []
    for rename in renames:
        src, dest = rename["src"], rename["dest"]
        if not os.path.lexists(src):
            continue
        changed.append(src)
        if check:
            continue
        if os.path.lexists(dest):
            _remove(src)
        else:
            os.rename(src, dest)
    return changed


def _converge_directories(directories: list[dict], check: bool) -> list[str]:
    changed = []
    for entry in sorted(directories, key=lambda e: e["path"].count(os.sep)):
        path = entry["path"]
        try:
            st = os.stat(path)
        except FileNotFoundError:
            changed.append(path)
            if not check:
                os.makedirs(path, mode=0o700, exist_ok=True)
                _set_attributes(path, entry)
            continue
        if _needs_attributes(st, entry):
            changed.append(path)
            if not check:
                _set_attributes(path, entry)
    return changed


def _write(entry: dict, data: bytes) -> None:
    path = entry["path"]
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".mlops_files.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        _set_attributes(tmp, entry)
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise


def _converge_files(files: list[dict], check: bool) -> list[str]:
    changed = []
    for entry in files:
        path, data = entry["path"], entry["content"].encode()
        try:
            st = os.stat(path)
        except FileNotFoundError:
            st = None
        if st is not None and entry["keep"]:
            if _needs_attributes(st, entry):
                changed.append(path)
                if not check:
                    _set_attributes(path, entry)
            continue
        if st is not None and not _needs_attributes(st, entry):
            with open(path, "rb") as current:
                if current.read() == data:
                    continue
        changed.append(path)
        if not check:
            _write(entry, data)
    return changed


def _converge_absent(paths: list[str], check: bool) -> list[str]:
    changed = [path for path in paths if os.path.lexists(path)]
    if not check:
        for path in changed:
            _remove(path)
    return changed


def _converge_exclusive(exclusive: list[str], listed: set[str], check: bool) -> list[str]:
    # A child stays when it is listed itself or when a listed path lies below it.
    wanted = set()
    for path in listed:
        while path not in ("", os.sep):
            wanted.add(path)
            path = os.path.dirname(path)
    changed = []
    for directory in exclusive:
        if not os.path.isdir(directory):
            continue
        for name in sorted(os.listdir(directory)):
            child = os.path.join(directory, name)
            if child not in wanted:
                changed.append(child)
                if not check:
                    _remove(child)
    return changed


def converge(params: dict, check: bool) -> list[str]:
    """Bring the paths to the state ``params`` describe; return the paths that (would) change."""
    listed = {e["path"] for e in params["files"]} | {e["path"] for e in params["directories"]}
    return (
        _converge_renames(params["renames"], check)
        + _converge_absent(params["absent"], check)
        + _converge_directories(params["directories"], check)
        + _converge_files(params["files"], check)
        + _converge_exclusive(params["exclusive"], listed, check)
    )


ARGUMENT_SPEC = {
    "directories": {"type": "list", "elements": "dict", "options": ENTRY_SPEC, "default": []},
    "files": {"type": "list", "elements": "dict", "options": FILE_SPEC, "default": []},
    "renames": {"type": "list", "elements": "dict", "options": RENAME_SPEC, "default": []},
    "absent": {"type": "list", "elements": "path", "default": []},
    "exclusive": {"type": "list", "elements": "path", "default": []},
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        changed = converge(module.params, module.check_mode)
    except OSError as exc:
        module.fail_json(msg=f"{exc.filename or ''}: {exc.strerror or exc}")
    module.exit_json(changed=bool(changed), paths=changed)


if __name__ == "__main__":
    main()
