"""A PostgreSQL major upgrade (issue 12), on environment e2e-pgmajor: build the PostgreSQL image
of the newer major on the Debian release that ships it (cached by Docker when its inputs are
unchanged), deploy a fresh environment on the older major, smoke it, fill it through the stock
clients, `make upgrade POSTGRESQL_MAJOR=<new>`, then prove that the server runs the new major,
that everything is still there by checksums and API reads, that MLflow takes new runs, that
the old volume is kept, that a second upgrade changes nothing and that a downgrade is refused
with nothing changed. Purges at the end, the kept volume too. The tests share one stack and
run in file order (pytest -x in mk/deploy.mk)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlopskit.backup import verify
from mlopskit.environments import parse_connection_env
from mlopskit.versions import image_set

from tests.e2e.e2e_support import (
    REPO_ROOT,
    container_states,
    containers,
    docker_json,
    docker_names,
    make,
    psql,
    recap_changed,
    run,
)
from tests.e2e.test_upgrade_across_versions import (
    fill_dvc,
    fill_tracking,
    git_dvc,
    snapshot,
)
from tests.smoke.test_dvc import configure_remote, tree_digest

ENV_NAME = "e2e-pgmajor"
# deploy/e2e-pgmajor/settings.yml's name prefix; the backup directory is its default.
PREFIX = "mlops-e2e-pgmajor"
LABEL = f"io.mlops-kit.env={ENV_NAME}"
KEPT_LABEL = f"io.mlops-kit.kept-from={ENV_NAME}"
BUILD_DIR = REPO_ROOT / "build" / ENV_NAME
PERSON_FILE = BUILD_DIR / "people" / "alice" / "connection.env"
MANIFEST = BUILD_DIR / "smoke-manifest.json"
BACKUP_DIR = Path("/var/backups/mlops-kit") / PREFIX
KEEP_DIR = REPO_ROOT / "build" / "test-e2e"
# Two majors Debian ships: bookworm's and trixie's (images/versions.env POSTGRESQL_DEBIAN_SUITES).
OLD_MAJOR, NEW_MAJOR = "15", "17"
OLD = image_set(postgresql_major=OLD_MAJOR, mlflow_version="")
NEW = image_set(postgresql_major=NEW_MAJOR, mlflow_version="")
KEPT_VOLUME = f"{PREFIX}-pgdata-{OLD_MAJOR}"


@pytest.fixture(scope="module", autouse=True)
def fresh_environment() -> Iterator[None]:
    """Start from nothing; purge at the end (backups and the kept volume too) unless
    MLOPS_E2E_KEEP=1."""
    cleanup()
    yield
    if os.environ.get("MLOPS_E2E_KEEP") != "1":
        cleanup()


def purge() -> None:
    result = make("destroy", ENV=ENV_NAME, PURGE="1", YES="1")
    assert result.returncode == 0, result.explain()


def cleanup() -> None:
    purge()
    for volume in docker_names("volume", KEPT_LABEL):
        subprocess.run(["docker", "volume", "rm", volume], check=True, capture_output=True)
    shutil.rmtree(BACKUP_DIR, ignore_errors=True)


@pytest.fixture(scope="module")
def timings() -> Iterator[dict[str, float]]:
    measured: dict[str, float] = {}
    yield measured
    KEEP_DIR.mkdir(parents=True, exist_ok=True)
    (KEEP_DIR / "postgresql-major-upgrade-timings.json").write_text(json.dumps(measured, indent=2))
    print(
        "\n[e2e] PostgreSQL major upgrade: "
        + ", ".join(f"{k} {v:.0f}" for k, v in measured.items())
    )


@pytest.fixture(scope="module")
def state() -> dict:
    """What one test leaves for the next: the fill's records and the snapshot before."""
    return {}


@pytest.fixture
def client_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """alice's connection.env in this process's environment, as the smoke suite does it."""
    connection = parse_connection_env(PERSON_FILE.read_text())
    for key, value in {**connection, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1"}.items():
        monkeypatch.setenv(key, value)
    import mlflow

    mlflow.set_tracking_uri(connection["MLFLOW_TRACKING_URI"])
    return dict(os.environ)


def server_major() -> int:
    return int(psql("SHOW server_version_num", database="postgres", env=ENV_NAME)) // 10000


def postgresql_container() -> dict:
    (info,) = docker_json("inspect", containers(ENV_NAME)["postgresql"])
    return info


def in_image(image: str, *command: str) -> str:
    return subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", command[0], image,
         *command[1:]],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout.strip()  # fmt: skip


def test_new_major_builds_on_its_debian_release(timings):
    """`make images POSTGRESQL_MAJOR=17`: <prefix>/postgresql:17 on Debian trixie (its base
    built once from the host's mirror when no registry answers), MLflow and SFTP on bookworm."""
    result = make("images", POSTGRESQL_MAJOR=NEW_MAJOR)
    assert result.returncode == 0, result.explain()
    timings["images incl. PostgreSQL 17 (s)"] = result.seconds
    (image,) = docker_json("image", "inspect", NEW.ref("postgresql"))
    assert image["Config"]["Labels"]["org.opencontainers.image.version"] == NEW_MAJOR
    assert f"(PostgreSQL) {NEW_MAJOR}." in in_image(NEW.ref("postgresql"), "postgres", "-V")
    release = in_image(NEW.ref("postgresql"), "cat", "/etc/os-release")
    assert "VERSION_CODENAME=trixie" in release
    release = in_image(NEW.ref("sftp"), "cat", "/etc/os-release")
    assert "VERSION_CODENAME=bookworm" in release


def test_fresh_deploy_on_the_old_major(timings):
    result = make("deploy", ENV=ENV_NAME, POSTGRESQL_MAJOR=OLD_MAJOR)
    assert result.returncode == 0, result.explain()
    timings["deploy on PostgreSQL 15 (s)"] = result.seconds
    assert postgresql_container()["Config"]["Image"] == OLD.ref("postgresql")
    assert server_major() == int(OLD_MAJOR)


def test_the_kit_works_on_the_old_major(timings):
    """The smoke suite: it records its runs, model and DVC objects in the manifest."""
    result = make("smoke", ENV=ENV_NAME)
    timings["smoke (s)"] = result.seconds
    assert result.returncode == 0, result.explain()


def test_fill_through_the_stock_clients(client_env, state, tmp_path_factory, timings):
    import mlflow

    started = time.monotonic()
    tag = os.urandom(4).hex()
    record = fill_tracking(mlflow, tag, tmp_path_factory.mktemp("blobs"))
    dvc = fill_dvc(client_env, tmp_path_factory.mktemp("dvc"))
    timings["fill (s)"] = time.monotonic() - started
    manifest = json.loads(MANIFEST.read_text())
    manifest["experiments"] += record["experiments"]
    manifest["runs"] += record["runs"]
    manifest["models"] += [
        {"name": record["model"]["name"], "version": version, "alias": alias}
        for alias, version in record["model"]["aliases"].items()
    ]
    manifest["dvc_objects"] += dvc["objects"]
    MANIFEST.write_text(json.dumps(manifest, indent=2))
    models = sorted({model["name"] for model in manifest["models"]})
    before = snapshot(mlflow, manifest["experiments"], models)
    assert sum(len(e["runs"]) for e in before["experiments"].values()) >= 6
    state.update(record=record, dvc=dvc, before=before, models=models, manifest=manifest)


def test_make_upgrade_moves_the_data_to_the_new_major(state, timings):
    (old_volume,) = [m["Name"] for m in postgresql_container()["Mounts"] if m["Type"] == "volume"]
    result = make("upgrade", ENV=ENV_NAME, POSTGRESQL_MAJOR=NEW_MAJOR)
    assert result.returncode == 0, result.explain()
    timings["make upgrade 15 -> 17 (s)"] = result.seconds
    moved = re.search(r"tables restored with the same row counts in (\d+)s", result.output)
    assert moved, result.explain()
    timings["of which the data move: stop, backup, keep, restore (s)"] = float(moved.group(1))
    assert server_major() == int(NEW_MAJOR)
    container = postgresql_container()
    assert container["Config"]["Image"] == NEW.ref("postgresql")
    assert [m["Name"] for m in container["Mounts"] if m["Type"] == "volume"] == [old_volume]
    assert not (BUILD_DIR / "postgresql-upgrade.json").exists()
    # The old data are kept, whole: a PostgreSQL 15 cluster in its own volume.
    assert docker_names("volume", KEPT_LABEL) == [KEPT_VOLUME]
    version = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", "cat",
         "-v", f"{KEPT_VOLUME}:/kept:ro", OLD.ref("postgresql"), "/kept/pgdata/PG_VERSION"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout.strip()  # fmt: skip
    assert version == OLD_MAJOR
    assert KEPT_VOLUME in result.output, "the upgrade must say where the old data are"
    # The backup taken first names the old image and is whole.
    (backup,) = [p for p in BACKUP_DIR.iterdir() if p.name.endswith("-before-upgrade")]
    manifest = json.loads((backup / "manifest.json").read_text())
    assert manifest["images"]["postgresql"] == OLD.ref("postgresql")
    verify(backup)
    state["backups"] = sorted(p.name for p in BACKUP_DIR.iterdir())


def test_everything_is_still_there_byte_for_byte(client_env, state):
    import mlflow

    result = run(
        [sys.executable, str(Path(__file__).with_name("check_persistence.py")), str(MANIFEST)],
        env=client_env,
    )
    assert result.returncode == 0, result.explain()
    assert "persistence ok" in result.output, result.explain()
    after = snapshot(mlflow, state["manifest"]["experiments"], state["models"])
    assert after == state["before"], "the API reads differently after the upgrade"


def test_dvc_pull_restores_the_dataset(client_env, state, tmp_path):
    clone = tmp_path / "clone"
    git_dvc("git", "clone", "-q", state["dvc"]["repo"], str(clone), cwd=tmp_path, env=client_env)
    shell = lambda *args, cwd: git_dvc(*args, cwd=cwd, env=client_env)  # noqa: E731
    configure_remote(shell, clone, add=False)
    git_dvc("dvc", "pull", "-q", cwd=clone, env=client_env)
    assert tree_digest(clone / "data") == state["dvc"]["digest"]


def test_mlflow_takes_new_runs_on_the_new_major(client_env, state):
    import mlflow

    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(state["record"]["experiments"][0])
    with mlflow.start_run(experiment_id=experiment.experiment_id) as active:
        mlflow.log_metric("loss", 0.01)
        mlflow.log_dict({"after": "postgresql upgrade"}, "after.json")
    assert client.get_run(active.info.run_id).data.metrics == {"loss": 0.01}
    assert mlflow.artifacts.load_dict(f"{active.info.artifact_uri}/after.json") == {
        "after": "postgresql upgrade"
    }


def test_a_second_upgrade_changes_nothing(timings):
    before = container_states(ENV_NAME)
    volumes = docker_names("volume", LABEL), docker_names("volume", KEPT_LABEL)
    result = make("upgrade", ENV=ENV_NAME, POSTGRESQL_MAJOR=NEW_MAJOR)
    assert result.returncode == 0, result.explain()
    timings["second make upgrade (s)"] = result.seconds
    assert "no data to move" in result.output, result.explain()
    assert recap_changed(result.output) == {"localhost": 0}, result.explain()
    assert container_states(ENV_NAME) == before, "a container was restarted or re-created"
    assert (docker_names("volume", LABEL), docker_names("volume", KEPT_LABEL)) == volumes
    assert server_major() == int(NEW_MAJOR)


def test_a_downgrade_is_refused_and_changes_nothing(state, timings):
    before = container_states(ENV_NAME)
    backups = sorted(p.name for p in BACKUP_DIR.iterdir())
    result = make("upgrade", ENV=ENV_NAME, POSTGRESQL_MAJOR=OLD_MAJOR)
    assert result.returncode != 0, result.explain()
    assert (
        f"holds PostgreSQL {NEW_MAJOR} data and POSTGRESQL_MAJOR asks for PostgreSQL {OLD_MAJOR}: "
        "that is a downgrade"
    ) in result.output, result.explain()
    assert "Nothing was changed" in result.output
    timings["refused downgrade (s)"] = result.seconds
    # A plain deploy on the older major stops before it replaces the running server.
    result = make("deploy", ENV=ENV_NAME, POSTGRESQL_MAJOR=OLD_MAJOR)
    assert result.returncode != 0, result.explain()
    timings["refused deploy on 15 (s)"] = result.seconds
    assert (
        f"holds PostgreSQL {NEW_MAJOR} data and this deploy would start PostgreSQL {OLD_MAJOR}"
    ) in result.output, result.explain()
    assert container_states(ENV_NAME) == before
    assert sorted(p.name for p in BACKUP_DIR.iterdir()) == backups
    assert server_major() == int(NEW_MAJOR)


def test_purge_removes_the_environment_and_the_kept_volume_on_request():
    purge()
    for kind in ("container", "network", "volume"):
        assert docker_names(kind, LABEL) == [], f"a {kind} survived PURGE=1"
    # PURGE=1 leaves what the upgrade kept (like the backups); the test removes it.
    assert docker_names("volume", KEPT_LABEL) == [KEPT_VOLUME]
    cleanup()
    assert docker_names("volume", KEPT_LABEL) == []
    assert not BUILD_DIR.exists()
