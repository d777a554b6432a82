"""The role's mlops_files module, on a real directory tree: what it writes, keeps and removes,
and that a second run with the same input changes nothing (the deploy's idempotency)."""

from __future__ import annotations

import importlib.util
import os
import stat
from pathlib import Path
from types import ModuleType

import pytest

MODULE_PATH = (
    Path(__file__).resolve().parents[2] / "ansible/roles/mlops_docker/library/mlops_files.py"
)


@pytest.fixture(scope="module")
def mlops_files() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mlops_files", MODULE_PATH)
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def params(**given) -> dict:
    base = {"directories": [], "files": [], "renames": [], "absent": [], "exclusive": []}
    base["files"] = [
        {"owner": None, "group": None, "keep": False} | f for f in given.pop("files", [])
    ]
    base["directories"] = [{"owner": None, "group": None} | d for d in given.pop("directories", [])]
    return base | given


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_writes_directories_and_files_then_changes_nothing(mlops_files, tmp_path):
    state = tmp_path / "state"
    spec = params(
        directories=[{"path": str(state / "svc"), "mode": "0500", "owner": 4242, "group": 0},
                     {"path": str(state), "mode": "0711"}],
        files=[{"path": str(state / "svc" / "secret"), "mode": "0400", "content": "s3cret\n",
                "owner": 4242, "group": 0}],
    )  # fmt: skip
    changed = mlops_files.converge(spec, check=False)
    assert sorted(changed) == sorted([str(state), str(state / "svc"), str(state / "svc/secret")])
    secret = state / "svc" / "secret"
    assert secret.read_text() == "s3cret\n"
    assert (mode(state), mode(state / "svc"), mode(secret)) == (0o711, 0o500, 0o400)
    assert (secret.stat().st_uid, secret.stat().st_gid) == (4242, 0)
    assert mlops_files.converge(spec, check=False) == []


def test_a_changed_content_mode_or_owner_is_rewritten(mlops_files, tmp_path):
    target = tmp_path / "f"
    entry = {"path": str(target), "mode": "0600", "content": "one\n"}
    mlops_files.converge(params(files=[entry]), check=False)
    for change in ({"content": "two\n"}, {"mode": "0644"}, {"owner": 4243}):
        entry = entry | change
        assert mlops_files.converge(params(files=[entry]), check=False) == [str(target)]
    assert target.read_text() == "two\n"
    assert (mode(target), target.stat().st_uid) == (0o644, 4243)
    assert [p.name for p in tmp_path.iterdir()] == ["f"], "a temporary file was left behind"


def test_keep_leaves_an_existing_file_as_it_is(mlops_files, tmp_path):
    """Generated secrets: made once, never replaced by the next deploy's new random value."""
    target = tmp_path / "password"
    target.write_text("the old one\n")
    target.chmod(0o644)
    entry = {"path": str(target), "mode": "0600", "content": "a new one\n", "keep": True}
    assert mlops_files.converge(params(files=[entry]), check=False) == [str(target)]
    assert target.read_text() == "the old one\n"
    assert mode(target) == 0o600
    assert mlops_files.converge(params(files=[entry]), check=False) == []


def test_renames_move_an_old_name_and_drop_it_beside_the_new_one(mlops_files, tmp_path):
    (tmp_path / "old_a").write_text("a\n")
    (tmp_path / "old_b").write_text("stale\n")
    (tmp_path / "new_b").write_text("in use\n")
    renames = [
        {"src": str(tmp_path / f"old_{x}"), "dest": str(tmp_path / f"new_{x}")} for x in "ab"
    ]
    spec = params(renames=renames)
    assert len(mlops_files.converge(spec, check=False)) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new_a", "new_b"]
    assert ((tmp_path / "new_a").read_text(), (tmp_path / "new_b").read_text()) == (
        "a\n",
        "in use\n",
    )
    assert mlops_files.converge(spec, check=False) == []


def test_exclusive_removes_what_is_not_listed_and_keeps_parents_of_what_is(mlops_files, tmp_path):
    people = tmp_path / "people"
    for name in ("alice", "gone"):
        (people / name).mkdir(parents=True)
        (people / name / "id_rsa").write_text("key\n")
    (people / "stray").write_text("x\n")
    spec = params(
        files=[
            {"path": str(people / "alice" / "connection.env"), "mode": "0600", "content": "c\n"}
        ],
        exclusive=[str(people), str(tmp_path / "missing")],
    )
    changed = mlops_files.converge(spec, check=False)
    assert sorted(changed) == sorted(
        [str(people / "alice" / "connection.env"), str(people / "gone"), str(people / "stray")]
    )
    assert sorted(p.name for p in people.iterdir()) == ["alice"]
    assert (people / "alice" / "id_rsa").exists(), "a file below a kept child must stay"


def test_absent_removes_files_and_trees(mlops_files, tmp_path):
    (tmp_path / "tree" / "sub").mkdir(parents=True)
    (tmp_path / "file").write_text("x")
    spec = params(absent=[str(tmp_path / "tree"), str(tmp_path / "file"), str(tmp_path / "none")])
    assert len(mlops_files.converge(spec, check=False)) == 2
    assert list(tmp_path.iterdir()) == []


def test_check_mode_reports_and_changes_nothing(mlops_files, tmp_path):
    (tmp_path / "stray").write_text("x")
    (tmp_path / "legacy").write_text("y")
    spec = params(
        directories=[{"path": str(tmp_path / "d"), "mode": "0700"}],
        files=[{"path": str(tmp_path / "d" / "f"), "mode": "0600", "content": "z"}],
        renames=[{"src": str(tmp_path / "legacy"), "dest": str(tmp_path / "current")}],
        exclusive=[str(tmp_path)],
    )
    before = sorted(os.listdir(tmp_path))
    assert len(mlops_files.converge(spec, check=True)) >= 4
    assert sorted(os.listdir(tmp_path)) == before
