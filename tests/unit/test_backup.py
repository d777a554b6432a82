"""Pure parts of backup/restore: target check, manifest verification, choice of the latest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from mlopskit import backup
from mlopskit.environments import Environment
from mlopskit.shell import CommandError


def make_backup(directory: Path, files: dict[str, bytes], databases=("mlflow",)) -> Path:
    directory.mkdir(parents=True)
    for name, content in files.items():
        (directory / name).write_bytes(content)
    manifest = {
        "environment": "x",
        "databases": list(databases),
        "files": {
            name: {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            for name, data in files.items()
        },
    }
    (directory / backup.MANIFEST).write_text(json.dumps(manifest))
    return directory


def test_a_complete_backup_verifies(tmp_path: Path) -> None:
    files = {"postgres-mlflow.dump": b"dump", "sftp-data.tar": b"tar"}
    assert backup.verify(make_backup(tmp_path / "b", files))["databases"] == ["mlflow"]


def test_a_damaged_file_stops_the_restore_before_anything_changes(tmp_path: Path) -> None:
    directory = make_backup(
        tmp_path / "b", {"postgres-mlflow.dump": b"dump", "sftp-data.tar": b"t"}
    )
    (directory / "sftp-data.tar").write_bytes(b"truncated")
    with pytest.raises(CommandError, match=r"sftp-data\.tar is missing or damaged; nothing was"):
        backup.verify(directory)


def test_a_missing_dump_is_refused(tmp_path: Path) -> None:
    directory = make_backup(tmp_path / "b", {"sftp-data.tar": b"t"}, databases=("mlflow",))
    with pytest.raises(CommandError, match="no dump of mlflow"):
        backup.verify(directory)


def test_a_directory_without_manifest_is_no_backup(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="is no backup"):
        backup.verify(tmp_path)


def test_latest_backup_skips_safety_copies(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(Environment, "build_dir", property(lambda self: tmp_path))
    for name in ("20261101T000000Z", "20261102T000000Z", "20261103T000000Z-before-restore"):
        make_backup(tmp_path / "backups" / name, {})
    assert backup.latest_backup(Environment("x")).name == "20261102T000000Z"


def test_no_backup_names_the_command_to_make_one(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(Environment, "build_dir", property(lambda self: tmp_path))
    with pytest.raises(CommandError, match="make backup ENV=x"):
        backup.latest_backup(Environment("x"))


def test_only_the_docker_target_is_covered(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(Environment, "deploy_dir", property(lambda self: tmp_path))
    (tmp_path / "settings.yml").write_text("mlops_target: kubernetes\n")
    with pytest.raises(CommandError, match="cover target docker"):
        backup.container_prefix(Environment("x"))
    (tmp_path / "settings.yml").write_text("mlops_target: docker\n")
    assert backup.container_prefix(Environment("x")) == "mlops-x"
    (tmp_path / "settings.yml").write_text("mlops_target: docker\nmlops_docker_name_prefix: p\n")
    assert backup.container_prefix(Environment("x")) == "p"
