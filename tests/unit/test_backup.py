"""Pure parts of backup/restore: settings, manifest verification, retention, the choice of the
latest backup, the SFTP tree's tar stream and the MLflow version guard."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
from mlopskit import backup, snapshot
from mlopskit.docker_env import DockerEnv, docker_env
from mlopskit.environments import Environment
from mlopskit.restore import check_mlflow_version
from mlopskit.shell import CommandError

from tests.unit.test_stack_file import docker_document


def make_backup(directory: Path, files: dict[str, bytes], databases=("mlflow",)) -> Path:
    directory.mkdir(parents=True)
    for name, content in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(content)
    manifest = {
        "environment": "x",
        "databases": list(databases),
        "files": {
            name: {
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "mode": 0o640,
                "mtime": "1700000000.5",
            }
            for name, data in files.items()
        },
    }
    (directory / backup.MANIFEST).write_text(json.dumps(manifest))
    return directory


def in_root(root: Path) -> DockerEnv:
    return DockerEnv(Environment("x"), "mlops-x", root / "state", root / "backups")


def test_a_complete_backup_verifies(tmp_path: Path) -> None:
    files = {"postgresql-mlflow.dump": b"dump", "sftp/artifacts/a.txt": b"a"}
    assert backup.verify(make_backup(tmp_path / "b", files))["databases"] == ["mlflow"]


def test_a_backup_from_before_the_postgresql_name_verifies(tmp_path: Path) -> None:
    """Format 2 named the dumps postgres-<db>.dump; restore still finds them (issue 11)."""
    directory = make_backup(tmp_path / "b", {"postgres-mlflow.dump": b"dump"})
    manifest = backup.verify(directory)
    assert backup.dump_file(manifest["files"], "mlflow") == "postgres-mlflow.dump"
    assert backup.dump_file({"postgresql-mlflow.dump": {}}, "mlflow") == "postgresql-mlflow.dump"


def test_a_backup_without_a_databases_dump_is_refused(tmp_path: Path) -> None:
    directory = make_backup(tmp_path / "b", {"postgresql-other.dump": b"dump"})
    with pytest.raises(CommandError, match="has no dump of mlflow; nothing was changed"):
        backup.verify(directory)


def test_a_damaged_file_stops_the_restore_before_anything_changes(tmp_path: Path) -> None:
    directory = make_backup(
        tmp_path / "b", {"postgresql-mlflow.dump": b"dump", "sftp/dvc/ab/cdef": b"t"}
    )
    (directory / "sftp/dvc/ab/cdef").write_bytes(b"truncated")
    with pytest.raises(CommandError, match=r"sftp/dvc/ab/cdef is missing or damaged; nothing was"):
        backup.verify(directory)


def test_a_manifest_naming_a_path_outside_the_backup_is_refused(tmp_path: Path) -> None:
    directory = make_backup(tmp_path / "b", {"postgresql-mlflow.dump": b"dump"})
    manifest = json.loads((directory / backup.MANIFEST).read_text())
    manifest["files"]["../../etc/passwd"] = {"bytes": 1, "sha256": "0"}
    (directory / backup.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(CommandError, match="refusing the path"):
        backup.verify(directory)


def test_a_missing_dump_is_refused(tmp_path: Path) -> None:
    directory = make_backup(tmp_path / "b", {"sftp/x": b"t"}, databases=("mlflow",))
    with pytest.raises(CommandError, match="no dump of mlflow"):
        backup.verify(directory)


def test_a_directory_without_manifest_is_no_backup(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="is no backup"):
        backup.verify(tmp_path)


def test_latest_backup_skips_safety_copies_and_partial_ones(tmp_path: Path) -> None:
    denv = in_root(tmp_path)
    for name in ("20261101T000000Z", "20261102T000000Z", "20261103T000000Z-before-restore"):
        make_backup(denv.backup_root / name, {})
    (denv.backup_root / "20261104T000000Z.partial").mkdir()
    assert backup.latest_backup(denv.backup_root, "x").name == "20261102T000000Z"


def test_no_backup_names_the_command_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="make backup ENV=x"):
        backup.latest_backup(in_root(tmp_path).backup_root, "x")


def test_rollback_advice_names_the_newest_complete_backup_taken_before_an_upgrade(
    tmp_path: Path,
) -> None:
    for name in ["20261101T000000Z-before-upgrade", "20261102T000000Z-before-upgrade",
                 "20261103T000000Z", "20261104T000000Z-before-restore"]:  # fmt: skip
        make_backup(tmp_path / name, {"postgresql-mlflow.dump": b"d"})
    (tmp_path / "20261105T000000Z-before-upgrade.partial").mkdir()  # an interrupted one
    newest = tmp_path / "20261102T000000Z-before-upgrade"
    advice = backup.rollback_advice(tmp_path, "prod")
    assert advice.startswith(f"The newest backup taken before an upgrade is {newest};"), advice
    assert f"`make restore ENV=prod FROM={newest} YES=1`" in advice


def test_rollback_advice_says_when_no_backup_was_taken_before_an_upgrade(tmp_path: Path) -> None:
    make_backup(tmp_path / "20261103T000000Z", {"postgresql-mlflow.dump": b"d"})
    assert backup.rollback_advice(tmp_path, "prod") == (
        f"No backup taken before an upgrade is in {tmp_path}."
    )


def test_retention_keeps_the_newest(tmp_path: Path) -> None:
    names = ["20261101T000000Z", "20261102T000000Z-before-upgrade", "20261103T000000Z"]
    for name in names:
        make_backup(tmp_path / name, {"postgresql-mlflow.dump": b"d"})
    deleted = backup.apply_retention(tmp_path, 2)
    assert [p.name for p in deleted] == names[:1]
    assert sorted(p.name for p in tmp_path.iterdir()) == names[1:]


@pytest.mark.parametrize("raw", ["0", "-1", "two", "1.5"])
def test_a_bad_keep_is_refused_before_anything_happens(raw: str) -> None:
    with pytest.raises(CommandError, match=f"KEEP='{raw}' must be a whole number of 1 or more"):
        backup.parse_keep(raw)


def test_keep_parses() -> None:
    assert (backup.parse_keep(""), backup.parse_keep("3")) == (0, 3)


# ---------------------------------------------------------------- settings of the environment


@pytest.fixture
def deploy_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(Environment, "deploy_dir", property(lambda self: tmp_path / "deploy"))
    monkeypatch.setattr(Environment, "build_dir", property(lambda self: tmp_path / "build"))
    (tmp_path / "deploy").mkdir()
    return tmp_path / "deploy"


def test_docker_names_are_not_made_up_for_another_target(deploy_dir: Path) -> None:
    (deploy_dir / "settings.yml").write_text("mlops_target: kubernetes\n")
    with pytest.raises(CommandError, match="'kubernetes', not docker"):
        docker_env(Environment("x"))


def test_defaults_come_from_the_role_and_are_outside_the_purge(deploy_dir: Path) -> None:
    (deploy_dir / "settings.yml").write_text("mlops_target: docker\n")
    denv = docker_env(Environment("x"), deployed=False)
    assert denv.prefix == "mlops-x"
    assert denv.state_dir == Path("/var/lib/mlops-kit/mlops-x")
    assert denv.backup_root == Path("/var/backups/mlops-kit/mlops-x")
    assert denv.migration_record == Path("/var/lib/mlops-kit/mlops-x/migrated-by-image")


def test_settings_override_the_defaults(deploy_dir: Path, tmp_path: Path) -> None:
    (deploy_dir / "settings.yml").write_text(
        "mlops_target: docker\nmlops_docker_name_prefix: p\n"
        f"mlops_docker_backup_dir: {tmp_path}/safe/{{{{ mlops_docker_name_prefix }}}}\n"
    )
    denv = docker_env(Environment("x"), deployed=False)
    assert denv.prefix == "p"
    assert denv.backup_root == tmp_path / "safe" / "p"
    with pytest.raises(CommandError, match="make deploy ENV=x"):
        denv.container("postgresql")


def test_a_deployed_environment_is_read_from_stack_json(deploy_dir: Path, tmp_path: Path) -> None:
    (deploy_dir / "settings.yml").write_text("mlops_target: docker\nmlops_docker_name_prefix: p\n")
    with pytest.raises(CommandError, match=r"build/x/stack.json does not exist"):
        docker_env(Environment("x"), find_containers=lambda env: {})
    document = docker_document(tmp_path / "elsewhere")
    document["backup_dir"] = str(tmp_path / "safe")
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "stack.json").write_text(json.dumps(document))
    for deployed in (True, False):
        denv = docker_env(Environment("x"), deployed=deployed)
        assert (denv.prefix, denv.container("postgresql")) == ("mlops-x", "pg-c")
        assert denv.backup_root == tmp_path / "safe"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("backups", "must be an absolute path"),
        ("{build}/backups", "`make destroy PURGE=1` deletes"),
        ("/var/lib/mlops-kit/mlops-x/backups", "`make destroy PURGE=1` deletes"),
    ],
)
def test_a_backup_dir_that_a_purge_would_delete_is_refused(
    deploy_dir: Path, tmp_path: Path, value: str, message: str
) -> None:
    value = value.format(build=tmp_path / "build")
    (deploy_dir / "settings.yml").write_text(
        f"mlops_target: docker\nmlops_docker_backup_dir: {value}\n"
    )
    with pytest.raises(CommandError, match=message):
        docker_env(Environment("x"), deployed=False)


# ---------------------------------------------------------------- the SFTP tree


def test_the_listing_keeps_files_dirs_and_links_and_refuses_escapes() -> None:
    raw = (
        b"d\t4096\t1700000000.1\t755\t\tartifacts\0"
        b"f\t3\t1700000000.2\t644\t\tartifacts/a b\tc.txt\0"
        b"l\t5\t1700000000.3\t777\tother\tlink\0"
        b"p\t0\t1700000000.4\t644\t\tfifo\0"
    )
    entries = snapshot.parse_listing(raw)
    assert [(e.kind, e.path) for e in entries] == [
        ("d", "artifacts"), ("f", "artifacts/a b\tc.txt"), ("l", "link"),
    ]  # fmt: skip
    assert entries[1].mode == 0o644
    assert entries[1].size == 3
    with pytest.raises(CommandError, match="refusing the path"):
        snapshot.parse_listing(b"f\t1\t1.0\t644\t\t../escape\0")


def test_the_restore_stream_carries_modes_times_and_contents(tmp_path: Path) -> None:
    directory = make_backup(tmp_path / "b", {"sftp/artifacts/1/a.txt": b"hello", "x.dump": b"d"})
    manifest = json.loads((directory / backup.MANIFEST).read_text())
    manifest["dirs"] = {"sftp/artifacts": {"mode": 0o750, "mtime": "1700000001.0"},
                        "sftp/artifacts/1": {"mode": 0o700, "mtime": "1700000002.0"}}  # fmt: skip
    manifest["links"] = {"sftp/latest": "artifacts/1"}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w|", format=tarfile.PAX_FORMAT) as out:
        snapshot._write_members(out, directory, manifest)
    buffer.seek(0)
    with tarfile.open(fileobj=buffer, mode="r:") as archive:
        members = {m.name: m for m in archive.getmembers()}
        assert list(members) == ["artifacts", "artifacts/1", "artifacts/1/a.txt", "latest"]
        assert members["artifacts"].isdir()
        assert members["artifacts"].mode == 0o750
        data = members["artifacts/1/a.txt"]
        assert (data.mode, data.mtime) == (0o640, 1700000000.5)
        assert archive.extractfile(data).read() == b"hello"  # type: ignore[union-attr]
        assert members["latest"].issym()
        assert members["latest"].linkname == "artifacts/1"


# ---------------------------------------------------------------- MLflow versions


def test_a_backup_from_a_newer_mlflow_is_refused() -> None:
    manifest = {"images": {"mlflow": "mlops-kit/mlflow:3.18.0"}}
    with pytest.raises(CommandError, match=r"MLflow 3\.18\.0, the images run MLflow 3\.17"):
        check_mlflow_version(manifest, "3.17.2")


@pytest.mark.parametrize("ref", ["mlops-kit/mlflow:3.16.0", "mlops-kit/mlflow:3.17.2", ""])
def test_same_or_older_mlflow_backups_are_accepted(ref: str) -> None:
    check_mlflow_version({"images": {"mlflow": ref}}, "3.17.2")


def test_restored_secrets_keep_the_cluster_s_superuser_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlopskit.restore import _restore_secrets

    monkeypatch.setattr(Environment, "build_dir", property(lambda self: tmp_path / "build"))
    current = tmp_path / "build" / "secrets"
    current.mkdir(parents=True)
    (current / "postgresql_superuser_password").write_text("cluster's")
    (current / "mlflow_admin_password").write_text("new")
    saved = tmp_path / "backup" / "secrets"
    saved.mkdir(parents=True)
    (saved / "postgresql_superuser_password").write_text("old cluster's")
    (saved / "mlflow_admin_password").write_text("old")
    _restore_secrets(Environment("x"), tmp_path / "backup")
    assert (current / "mlflow_admin_password").read_text() == "old"
    assert (current / "postgresql_superuser_password").read_text() == "cluster's"
    assert current.stat().st_mode & 0o777 == 0o700


def test_an_environment_deployed_before_stack_json_is_found_by_labels(deploy_dir: Path) -> None:
    """`make upgrade` backs up first: an environment an older version deployed (no
    stack.json) still gets its backup, with containers found by the role's labels."""
    (deploy_dir / "settings.yml").write_text("mlops_target: docker\n")
    labelled = {"postgresql": "pg-c", "sftp": "sftp-c", "mlflow": "mlflow-c"}
    denv = docker_env(Environment("x"), find_containers=lambda env: labelled)
    assert (denv.prefix, denv.container("sftp")) == ("mlops-x", "sftp-c")
    assert denv.backup_root == Path("/var/backups/mlops-kit/mlops-x")
