"""Upgrades across real versions (issue 12), on environment e2e-upgrade, as an ops team does
them one after the other on one stack.

MLflow: build the image at the older release of images/versions.env MLFLOW_UPGRADE_FROM
(cached by Docker when its inputs are unchanged), deploy a fresh environment on it, smoke it,
fill it through the stock clients (experiments, runs with params, metric histories and tags,
artifacts, a registered model with versions and aliases, DVC data), `make upgrade` to
MLFLOW_VERSION, then prove by checksums and API reads that everything is still there and
usable, that the migration ran exactly once and that the backup taken before it names the old
image.

PostgreSQL: then `make upgrade POSTGRESQL_MAJOR=<newer>` (its image built on the Debian release
that ships it) and prove that the server runs the new major, that everything is still there,
that the old volume is kept, that a second upgrade changes nothing and that a downgrade is
refused with nothing changed.

Purges at the end, the kept volume too. The tests share one stack and run in file order
(pytest -x in mk/deploy.mk)."""

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
import requests
from mlopskit.backup import verify
from mlopskit.environments import parse_connection_env
from mlopskit.versions import VERSIONS_FILE, image_set, read_env_file

from tests.e2e.e2e_support import (
    REPO_ROOT,
    assert_no_secret_in,
    container_states,
    containers,
    docker_json,
    docker_names,
    kept_timings,
    make,
    psql,
    purge,
    recap_changed,
    run,
)
from tests.smoke.smoke_support import sha256_of
from tests.smoke.test_dvc import configure_remote, tree_digest, write_dataset

ENV_NAME = "e2e-upgrade"
# deploy/e2e-upgrade/settings.yml's name prefix; the backup directory is its default.
PREFIX = "mlops-e2e-upgrade"
LABEL = f"io.mlops-kit.env={ENV_NAME}"
KEPT_LABEL = f"io.mlops-kit.kept-from={ENV_NAME}"
BUILD_DIR = REPO_ROOT / "build" / ENV_NAME
PERSON_FILE = BUILD_DIR / "people" / "alice" / "connection.env"
MANIFEST = BUILD_DIR / "smoke-manifest.json"
STATE_DIR = Path("/var/lib/mlops-kit") / PREFIX
BACKUP_DIR = Path("/var/backups/mlops-kit") / PREFIX
# The release the environment starts on, and the one it is upgraded to (versions.env).
OLD_VERSION = read_env_file(VERSIONS_FILE)["MLFLOW_UPGRADE_FROM"]
NEW = image_set(mlflow_version="")
OLD = image_set(mlflow_version=OLD_VERSION)
# Two PostgreSQL majors Debian ships (images/versions.env POSTGRESQL_DEBIAN_SUITES): the pinned
# one, which the stack starts on, and the newest there, with the Debian release of each.
SUITES = dict(NEW.postgresql_suites)
OLD_MAJOR, NEW_MAJOR = NEW.postgresql_major, max(SUITES, key=int)
NEW_PG = image_set(postgresql_major=NEW_MAJOR, mlflow_version="")
KEPT_VOLUME = f"{PREFIX}-pgdata-{OLD_MAJOR}"
EXPERIMENTS = 2
RUNS_PER_EXPERIMENT = 3
BLOB_BYTES = 2 * 1024 * 1024
VENV_BIN = Path(sys.executable).parent


def cleanup() -> None:
    """PURGE=1, then what it leaves by design: the backups and the volume an upgrade kept."""
    purge(ENV_NAME)
    for volume in docker_names("volume", KEPT_LABEL):
        subprocess.run(["docker", "volume", "rm", volume], check=True, capture_output=True)
    shutil.rmtree(BACKUP_DIR, ignore_errors=True)


@pytest.fixture(scope="module", autouse=True)
def fresh_environment() -> Iterator[None]:
    """Start from nothing; clean up at the end unless MLOPS_E2E_KEEP=1."""
    assert OLD.mlflow_version != NEW.mlflow_version, "MLFLOW_UPGRADE_FROM is MLFLOW_VERSION"
    assert OLD_MAJOR != NEW_MAJOR, "the pinned PostgreSQL major is the one to upgrade to"
    cleanup()
    yield
    if os.environ.get("MLOPS_E2E_KEEP") != "1":
        cleanup()


@pytest.fixture(scope="module")
def timings() -> Iterator[dict[str, float]]:
    yield from kept_timings("upgrade-timings.json", "upgrade")


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
    monkeypatch.delenv("MLFLOW_VERSION", raising=False)
    import mlflow

    mlflow.set_tracking_uri(connection["MLFLOW_TRACKING_URI"])
    return dict(os.environ)


def server_version() -> str:
    """What the server says it runs (GET /version, as a person: basic auth guards it)."""
    connection = parse_connection_env(PERSON_FILE.read_text())
    auth = (connection["MLFLOW_TRACKING_USERNAME"], connection["MLFLOW_TRACKING_PASSWORD"])
    response = requests.get(f"{connection['MLFLOW_TRACKING_URI']}/version", auth=auth, timeout=30)
    response.raise_for_status()
    return response.text.strip()


def mlflow_container() -> dict:
    (info,) = docker_json("inspect", containers(ENV_NAME)["mlflow"])
    return info


def test_old_image_builds_from_its_own_requirements(timings):
    """`make images MLFLOW_VERSION=<old>`: a lock resolved for that release (cached), the
    image tagged with it; with unchanged inputs every layer comes from Docker's cache."""
    result = make("images", MLFLOW_VERSION=OLD_VERSION)
    assert result.returncode == 0, result.explain()
    timings["old image build (s)"] = result.seconds
    (image,) = docker_json("image", "inspect", OLD.ref("mlflow"))
    assert image["Config"]["Labels"]["org.opencontainers.image.version"] == OLD_VERSION
    installed = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "python", OLD.ref("mlflow"), "-c",
         "import mlflow; print(mlflow.__version__)"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout.strip()  # fmt: skip
    assert installed == OLD_VERSION


def in_image(image: str, *command: str) -> str:
    return subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", command[0], image,
         *command[1:]],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout.strip()  # fmt: skip


def test_new_postgresql_major_builds_on_its_debian_release(timings):
    """`make images POSTGRESQL_MAJOR=<new>`: <prefix>/postgresql:<new> on the Debian release
    that ships it (its base built once from the host's mirror when no registry answers), MLflow
    and SFTP on the pinned major's release."""
    result = make("images", POSTGRESQL_MAJOR=NEW_MAJOR)
    assert result.returncode == 0, result.explain()
    timings[f"images incl. PostgreSQL {NEW_MAJOR} (s)"] = result.seconds
    (image,) = docker_json("image", "inspect", NEW_PG.ref("postgresql"))
    assert image["Config"]["Labels"]["org.opencontainers.image.version"] == NEW_MAJOR
    assert f"(PostgreSQL) {NEW_MAJOR}." in in_image(NEW_PG.ref("postgresql"), "postgres", "-V")
    release = in_image(NEW_PG.ref("postgresql"), "cat", "/etc/os-release")
    assert f"VERSION_CODENAME={SUITES[NEW_MAJOR]}" in release
    release = in_image(NEW_PG.ref("sftp"), "cat", "/etc/os-release")
    assert f"VERSION_CODENAME={SUITES[OLD_MAJOR]}" in release


def server_major() -> int:
    return int(psql("SHOW server_version_num", database="postgres", env=ENV_NAME)) // 10000


def postgresql_container() -> dict:
    (info,) = docker_json("inspect", containers(ENV_NAME)["postgresql"])
    return info


def test_fresh_deploy_on_the_old_release(timings):
    result = make("deploy", ENV=ENV_NAME, MLFLOW_VERSION=OLD_VERSION)
    assert result.returncode == 0, result.explain()
    timings["deploy on the old release (s)"] = result.seconds
    assert mlflow_container()["Config"]["Image"] == OLD.ref("mlflow")
    assert server_version() == OLD_VERSION
    assert server_major() == int(OLD_MAJOR)


def test_the_kit_works_on_the_old_release(timings):
    """The whole smoke suite on the old release: auth and the kit's roles, proxied artifacts
    over SFTP, DVC, the UI. It records its runs, model and DVC objects in the manifest."""
    result = make("smoke", ENV=ENV_NAME)
    timings["smoke on the old release (s)"] = result.seconds
    assert result.returncode == 0, result.explain()


def git_dvc(*args: str, cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        list(args), cwd=cwd, capture_output=True, text=True, timeout=600, check=False,
        env={**env, "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
             "GIT_AUTHOR_NAME": "Upgrade", "GIT_AUTHOR_EMAIL": "upgrade@example.invalid",
             "GIT_COMMITTER_NAME": "Upgrade", "GIT_COMMITTER_EMAIL": "upgrade@example.invalid",
             "DVC_NO_ANALYTICS": "1", "GIT_TERMINAL_PROMPT": "0"},
    )  # fmt: skip
    assert result.returncode == 0, f"{' '.join(args)}: {result.stdout}\n{result.stderr}"
    return result.stdout


def fill_tracking(mlflow, tag: str, blobs: Path) -> dict:
    """Experiments of runs (one nested) with params, metric histories, tags and artifacts,
    and a registered model with two versions, each behind an alias."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    client = mlflow.MlflowClient()
    features, labels = load_iris(return_X_y=True)
    record: dict = {"experiments": [], "runs": [], "artifact_bytes": 0}
    model_name = f"upgrade-model-{tag}"
    models = []
    for e in range(EXPERIMENTS):
        name = f"upgrade-{tag}-{e}"
        experiment_id = mlflow.create_experiment(name, tags={"team": "upgrade"})
        record["experiments"].append(name)
        first_run = None
        for r in range(RUNS_PER_EXPERIMENT):
            blob = blobs / f"blob-{e}-{r}.bin"
            blob.write_bytes(os.urandom(BLOB_BYTES))
            # The second run of the first experiment is a child of its first.
            parent = first_run if (e, r) == (0, 1) else None
            with mlflow.start_run(
                experiment_id=experiment_id, run_name=f"run-{e}-{r}", parent_run_id=parent
            ) as active:
                run_id = active.info.run_id
                first_run = first_run or run_id
                mlflow.log_params({"lr": 0.1 * (r + 1), "epochs": 20, "experiment": e})
                mlflow.set_tags({"stage": "before-upgrade", "index": str(r)})
                for step in range(20):
                    mlflow.log_metrics({"loss": 1 / (step + 1 + r), "acc": step / 20}, step=step)
                mlflow.log_artifact(str(blob), artifact_path="data")
                mlflow.log_dict({"run": r, "experiment": e}, "meta/info.json")
                record["runs"].append(
                    {"run_id": run_id, "artifact": f"data/{blob.name}", "sha256": sha256_of(blob)}
                )
                record["artifact_bytes"] += BLOB_BYTES
                if e == 0 and r < 2:
                    model = LogisticRegression(max_iter=300 + 100 * r).fit(features, labels)
                    mlflow.sklearn.log_model(
                        model, name="model", registered_model_name=model_name,
                        input_example=features[:2],
                    )  # fmt: skip
                    models.append(model)
    versions = sorted(
        client.search_model_versions(f"name='{model_name}'"), key=lambda v: int(v.version)
    )
    assert [v.version for v in versions] == ["1", "2"]
    client.set_registered_model_alias(model_name, "champion", "1")
    client.set_registered_model_alias(model_name, "challenger", "2")
    client.set_model_version_tag(model_name, "1", "validated", "yes")
    record["model"] = {"name": model_name, "aliases": {"champion": "1", "challenger": "2"}}
    record["predictions"] = {
        alias: models[int(version) - 1].predict(features[::10]).tolist()
        for alias, version in record["model"]["aliases"].items()
    }
    return record


def fill_dvc(env: dict[str, str], root: Path) -> dict:
    """A git + DVC project whose dataset is pushed to the DVC remote on SFTP."""
    repo = root / "project"
    repo.mkdir()
    git_dvc("git", "init", "-q", "-b", "main", cwd=repo, env=env)
    git_dvc("dvc", "init", "-q", cwd=repo, env=env)
    shell = lambda *args, cwd: git_dvc(*args, cwd=cwd, env=env)  # noqa: E731
    configure_remote(shell, repo, add=True)
    write_dataset(repo / "data", 7)
    git_dvc("dvc", "add", "-q", "data", cwd=repo, env=env)
    git_dvc("git", "add", "-A", cwd=repo, env=env)
    git_dvc("git", "commit", "-q", "-m", "data", cwd=repo, env=env)
    git_dvc("dvc", "push", "-q", cwd=repo, env=env)
    cache = repo / ".dvc" / "cache"
    objects = [str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file()]
    return {"repo": str(repo), "digest": tree_digest(repo / "data"), "objects": objects}


def list_artifacts(client, run_id: str, path: str | None = None) -> list[tuple[str, int]]:
    found = []
    for item in client.list_artifacts(run_id, path):
        if item.is_dir:
            found += list_artifacts(client, run_id, item.path)
        else:
            found.append((item.path, item.file_size))
    return found


def snapshot(mlflow, experiment_names: list[str], model_names: list[str]) -> dict:
    """What the API says about the experiments and models: every run's info, params, metrics
    (with their whole history), tags and artifact listing; every model version and alias."""
    client = mlflow.MlflowClient()
    result: dict = {"experiments": {}, "models": {}}
    for name in sorted(experiment_names):
        experiment = client.get_experiment_by_name(name)
        assert experiment is not None, f"experiment {name} is gone"
        runs = {}
        for found in client.search_runs([experiment.experiment_id], max_results=1000):
            run_id = found.info.run_id
            runs[run_id] = {
                "info": [
                    found.info.run_name,
                    found.info.status,
                    found.info.start_time,
                    found.info.end_time,
                    found.info.artifact_uri,
                ],
                "params": found.data.params,
                "tags": found.data.tags,
                "history": {
                    key: sorted(
                        (m.step, m.timestamp, m.value)
                        for m in client.get_metric_history(run_id, key)
                    )
                    for key in sorted(found.data.metrics)
                },
                "artifacts": sorted(list_artifacts(client, run_id)),
            }
        result["experiments"][name] = {
            "id": experiment.experiment_id,
            "tags": {k: v for k, v in experiment.tags.items() if not k.startswith("mlflow.")},
            "runs": runs,
        }
    for name in sorted(model_names):
        model = client.get_registered_model(name)
        result["models"][name] = {
            "aliases": dict(model.aliases),
            "versions": {
                v.version: [v.run_id, v.source, v.status, dict(v.tags)]
                for v in client.search_model_versions(f"name='{name}'")
            },
        }
    # JSON-shaped (tuples as lists), so it compares equal to itself after a round trip.
    return json.loads(json.dumps(result))


def test_fill_through_the_stock_clients(client_env, state, tmp_path_factory, timings):
    import mlflow

    started = time.monotonic()
    tag = os.urandom(4).hex()
    record = fill_tracking(mlflow, tag, tmp_path_factory.mktemp("blobs"))
    dvc = fill_dvc(client_env, tmp_path_factory.mktemp("dvc"))
    timings["fill (s)"] = time.monotonic() - started
    # Into the smoke manifest: check_persistence.py then checks the fill's data as well.
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
    runs = sum(len(e["runs"]) for e in before["experiments"].values())
    artifact_bytes = sum(
        size for e in before["experiments"].values() for r in e["runs"].values()
        for _, size in r["artifacts"]
    )  # fmt: skip
    assert runs >= EXPERIMENTS * RUNS_PER_EXPERIMENT
    assert artifact_bytes >= EXPERIMENTS * RUNS_PER_EXPERIMENT * BLOB_BYTES
    timings["runs (count)"], timings["run artifacts (MB)"] = runs, artifact_bytes / 2**20
    versions = sum(len(model["versions"]) for model in before["models"].values())
    timings["registered model versions (count)"] = versions
    timings["DVC objects (count)"] = len(manifest["dvc_objects"])
    state.update(record=record, dvc=dvc, before=before, models=models, manifest=manifest)


def migrate_task_results(output: str) -> list[str]:
    """The results of the role's one-off migration task in a deploy's output, in order."""
    banner = r"TASK \[mlops_docker : Run migrate\][^\n]*\n"
    return re.findall(banner + r"(?:(?!TASK )[^\n]*\n)*?(\w+): \[", output)


def alembic_head() -> str:
    """The newest tracking schema revision of this checkout's MLflow (the pinned one)."""
    import mlflow
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option(
        "script_location", str(Path(mlflow.__file__).parent / "store" / "db_migrations")
    )
    return ScriptDirectory.from_config(config).get_current_head()


def test_make_upgrade_moves_to_the_pinned_release(state, timings, monkeypatch):
    record = STATE_DIR / "migrated-by-image"
    old_image = mlflow_container()["Image"]
    assert record.read_text().strip() == old_image, "the old release's migration is recorded"
    monkeypatch.delenv("MLFLOW_VERSION", raising=False)
    result = make("upgrade", ENV=ENV_NAME)
    assert result.returncode == 0, result.explain()
    timings["make upgrade incl. backup, build check and migration (s)"] = result.seconds
    # The migration ran once, in the role's one-off container, on the new image.
    assert migrate_task_results(result.output) == ["changed"], result.explain()
    # The old server was stopped before the schema changed: no session but the migration's own.
    assert "other sessions on the databases while migrating: 0" in result.output, result.explain()
    assert_no_secret_in(result.output, BUILD_DIR / "secrets")  # the migration's log is printed
    container = mlflow_container()
    assert container["Config"]["Image"] == NEW.ref("mlflow")
    assert record.read_text().strip() == container["Image"] != old_image
    logs = subprocess.run(
        ["docker", "logs", container["Name"].lstrip("/")], capture_output=True, text=True,
        check=True, timeout=60,
    )  # fmt: skip
    assert "migrating the tracking database" not in logs.stdout + logs.stderr, (
        "the server migrated too"
    )
    assert psql("SELECT version_num FROM alembic_version", env=ENV_NAME).split() == [alembic_head()]
    assert server_version() == NEW.mlflow_version
    # The backup taken first names the release it was taken on, and is whole.
    (backup,) = [p for p in BACKUP_DIR.iterdir() if p.name.endswith("-before-upgrade")]
    manifest = json.loads((backup / "manifest.json").read_text())
    assert manifest["images"]["mlflow"] == OLD.ref("mlflow")
    verify(backup)
    state["backups"] = {backup.name}


def assert_everything_is_still_there(client_env: dict[str, str], state: dict) -> None:
    """The smoke manifest's checksums (check_persistence.py) and the API snapshot taken before."""
    import mlflow

    result = run(
        [sys.executable, str(Path(__file__).with_name("check_persistence.py")), str(MANIFEST)],
        env=client_env,
    )
    assert result.returncode == 0, result.explain()
    assert "persistence ok" in result.output, result.explain()
    after = snapshot(mlflow, state["manifest"]["experiments"], state["models"])
    assert after == state["before"], "the API reads differently after the upgrade"


def assert_dvc_pull_restores_the_dataset(client_env: dict[str, str], state: dict, tmp_path: Path):
    """A fresh clone of the fill's project gets its dataset back from the DVC remote."""
    clone = tmp_path / "clone"
    git_dvc("git", "clone", "-q", state["dvc"]["repo"], str(clone), cwd=tmp_path, env=client_env)
    shell = lambda *args, cwd: git_dvc(*args, cwd=cwd, env=client_env)  # noqa: E731
    configure_remote(shell, clone, add=False)
    git_dvc("dvc", "pull", "-q", cwd=clone, env=client_env)
    assert tree_digest(clone / "data") == state["dvc"]["digest"]


def test_everything_is_still_there_byte_for_byte(client_env, state):
    assert_everything_is_still_there(client_env, state)


def test_dvc_pull_restores_the_dataset(client_env, state, tmp_path):
    assert_dvc_pull_restores_the_dataset(client_env, state, tmp_path)


def assert_a_new_run_goes_into_an_old_experiment(state: dict, after: str):
    """A run with a metric and an artifact in the fill's first experiment, read back."""
    import mlflow

    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(state["record"]["experiments"][0])
    with mlflow.start_run(experiment_id=experiment.experiment_id) as active:
        mlflow.log_metric("loss", 0.01)
        mlflow.log_dict({"after": after}, "after.json")
    assert client.get_run(active.info.run_id).data.metrics == {"loss": 0.01}
    assert mlflow.artifacts.load_dict(f"{active.info.artifact_uri}/after.json") == {"after": after}
    return active


def test_old_data_is_still_usable(client_env, state, tmp_path):
    """New runs go into an old experiment; old model versions load by alias and predict as
    before; the registry takes a new version of an old model and moves an alias to it."""
    import mlflow
    from sklearn.datasets import load_iris

    client = mlflow.MlflowClient()
    record = state["record"]
    active = assert_a_new_run_goes_into_an_old_experiment(state, "upgrade")
    features, _ = load_iris(return_X_y=True)
    name = record["model"]["name"]
    for alias, predictions in record["predictions"].items():
        loaded = mlflow.pyfunc.load_model(f"models:/{name}@{alias}")
        assert loaded.predict(features[::10]).tolist() == predictions, alias
    local = mlflow.artifacts.download_artifacts(f"models:/{name}/1", dst_path=str(tmp_path))
    assert (Path(local) / "MLmodel").is_file()
    new_version = client.create_model_version(
        name, f"runs:/{active.info.run_id}/after.json", active.info.run_id
    )
    client.set_registered_model_alias(name, "challenger", new_version.version)
    assert client.get_model_version_by_alias(name, "challenger").version == new_version.version
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    # What the next upgrade must keep: the alias where it now points (check_persistence.py).
    for model in state["manifest"]["models"]:
        if (model["name"], model["alias"]) == (name, "challenger"):
            model["version"] = new_version.version
    MANIFEST.write_text(json.dumps(state["manifest"], indent=2))


def test_an_older_mlflow_is_refused_with_the_backup_named(state, timings):
    """Deploying the old release on the migrated data: its migration step refuses the newer
    schema, the running server (stopped for the attempt) serves again on the new image with its
    container kept, and the error names the backup taken before the upgrade and the command."""
    container = mlflow_container()
    record = (STATE_DIR / "migrated-by-image").read_text()
    result = make("deploy", ENV=ENV_NAME, MLFLOW_VERSION=OLD.mlflow_version)
    assert result.returncode != 0, result.explain()
    timings["refused MLflow downgrade (s)"] = result.seconds
    said = " ".join(result.output.split())  # ansible folds long messages
    (backup,) = state["backups"]
    assert f"which MLflow {OLD.mlflow_version} does not know" in said, result.explain()
    assert "MLflow serves again on its previous image" in said, result.explain()
    assert f"make restore ENV={ENV_NAME} FROM={BACKUP_DIR / backup} YES=1" in said, result.explain()
    assert_no_secret_in(result.output, BUILD_DIR / "secrets")  # the migration's error is printed
    after = mlflow_container()
    assert (after["Id"], after["Config"]["Image"]) == (container["Id"], NEW.ref("mlflow"))
    assert after["State"]["Health"]["Status"] == "healthy"
    assert server_version() == NEW.mlflow_version
    assert (STATE_DIR / "migrated-by-image").read_text() == record
    assert psql("SELECT version_num FROM alembic_version", env=ENV_NAME).split() == [alembic_head()]


def test_make_upgrade_moves_the_data_to_a_new_postgresql_major(client_env, state, timings):
    import mlflow

    models = sorted({model["name"] for model in state["manifest"]["models"]})
    state["before"] = snapshot(mlflow, state["manifest"]["experiments"], models)
    (old_volume,) = [m["Name"] for m in postgresql_container()["Mounts"] if m["Type"] == "volume"]
    result = make("upgrade", ENV=ENV_NAME, POSTGRESQL_MAJOR=NEW_MAJOR)
    assert result.returncode == 0, result.explain()
    timings[f"make upgrade PostgreSQL {OLD_MAJOR} -> {NEW_MAJOR} (s)"] = result.seconds
    moved = re.search(r"tables restored with the same row counts in (\d+)s", result.output)
    assert moved, result.explain()
    timings["of which the data move: stop, backup, keep, restore (s)"] = float(moved.group(1))
    assert server_major() == int(NEW_MAJOR)
    container = postgresql_container()
    assert container["Config"]["Image"] == NEW_PG.ref("postgresql")
    assert [m["Name"] for m in container["Mounts"] if m["Type"] == "volume"] == [old_volume]
    assert not (BUILD_DIR / "postgresql-upgrade.json").exists()
    # The old data are kept, whole: a cluster of the old major in its own volume.
    assert docker_names("volume", KEPT_LABEL) == [KEPT_VOLUME]
    version = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", "cat",
         "-v", f"{KEPT_VOLUME}:/kept:ro", NEW.ref("postgresql"), "/kept/pgdata/PG_VERSION"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout.strip()  # fmt: skip
    assert version == OLD_MAJOR
    assert KEPT_VOLUME in result.output, "the upgrade must say where the old data are"
    # The backup taken first names the old image and is whole.
    (backup,) = [
        p for p in BACKUP_DIR.iterdir()
        if p.name.endswith("-before-upgrade") and p.name not in state["backups"]
    ]  # fmt: skip
    manifest = json.loads((backup / "manifest.json").read_text())
    assert manifest["images"]["postgresql"] == NEW.ref("postgresql")
    verify(backup)


def test_everything_is_still_there_on_the_new_major(client_env, state, tmp_path):

    assert_everything_is_still_there(client_env, state)
    assert_dvc_pull_restores_the_dataset(client_env, state, tmp_path)
    assert_a_new_run_goes_into_an_old_experiment(state, "postgresql upgrade")


def test_a_second_postgresql_upgrade_changes_nothing(timings):
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


def test_a_postgresql_downgrade_is_refused_and_changes_nothing(timings):
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
    timings[f"refused deploy on {OLD_MAJOR} (s)"] = result.seconds
    assert (
        f"holds PostgreSQL {NEW_MAJOR} data and this deploy would start PostgreSQL {OLD_MAJOR}"
    ) in result.output, result.explain()
    assert container_states(ENV_NAME) == before
    assert sorted(p.name for p in BACKUP_DIR.iterdir()) == backups
    assert server_major() == int(NEW_MAJOR)


def test_purge_removes_the_environment_and_the_kept_volume_on_request():
    purge(ENV_NAME)
    for kind in ("container", "network", "volume"):
        assert docker_names(kind, LABEL) == [], f"a {kind} survived PURGE=1"
    assert not BUILD_DIR.exists()
    # PURGE=1 leaves what the upgrade kept (like the backups); the test removes it.
    assert docker_names("volume", KEPT_LABEL) == [KEPT_VOLUME]
    cleanup()
    assert docker_names("volume", KEPT_LABEL) == []
