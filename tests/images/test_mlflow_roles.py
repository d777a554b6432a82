"""People and roles in the MLflow image: each boundary attacked with real HTTP clients.

A server with its own PostgreSQL gets a people list (two editors, a reader, an admin) and a
metrics account; every test uses the accounts' own credentials, never the bootstrap admin's
unless it sets a scene up.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
import requests
from mlflow.tracking import MlflowClient

from tests.images.conftest import Sftp, start_mlflow_with_people
from tests.support.docker import Container, Sandbox, assert_config_error, new_secret, secret_dir

pytestmark = pytest.mark.docker

PEOPLE = {"alice": "editor", "bob": "reader", "carol": "admin", "dave": "editor"}
API = "/api/2.0/mlflow"
GRANT = "/api/3.0/mlflow/users/permissions/grant"


@dataclass
class Server:
    container: Container
    people_dir: Path
    passwords: dict[str, str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.container.host_port(5000)}"

    def call(self, who: str, method: str, path: str, **kwargs: object) -> requests.Response:
        return requests.request(
            method, self.url + path, auth=(who, self.passwords[who]), timeout=60, **kwargs
        )


def write_people(directory: Path, people: dict[str, str], passwords: dict[str, str]) -> None:
    for old in directory.glob("*.password"):
        old.unlink()
    (directory / "people.json").write_text(
        json.dumps([{"name": name, "role": role} for name, role in people.items()])
    )
    for name in people:
        (directory / f"{name}.password").write_text(passwords[name] + "\n")
    for path in (directory, *directory.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)


@pytest.fixture(scope="module")
def server(
    sandbox: Sandbox, images, sftp: Sftp, tmp_path_factory: pytest.TempPathFactory
) -> Server:
    tmp = tmp_path_factory.mktemp("roles")
    passwords = {name: new_secret() for name in PEOPLE}
    people_dir = tmp / "people"
    people_dir.mkdir()
    write_people(people_dir, PEOPLE, passwords)
    started = start_mlflow_with_people(
        sandbox, images, sftp, tmp, "mlflow-roles", people_dir, passwords
    )
    container = started.container
    return Server(container, people_dir, passwords)


@pytest.fixture
def as_user(server: Server) -> Iterator[callable]:
    """Point the stock mlflow client at the server as one person."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}

    def use(who: str) -> MlflowClient:
        os.environ["MLFLOW_TRACKING_USERNAME"] = who
        os.environ["MLFLOW_TRACKING_PASSWORD"] = server.passwords[who]
        mlflow.set_tracking_uri(server.url)
        return MlflowClient(server.url)

    yield use
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def shared(server: Server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An experiment and a run the bootstrap admin made, with an artifact, and a registered
    model with one version."""
    name = f"shared-{uuid.uuid4().hex[:6]}"
    response = server.call("admin", "POST", f"{API}/experiments/create", json={"name": name})
    experiment_id = response.json()["experiment_id"]
    run = server.call("admin", "POST", f"{API}/runs/create", json={"experiment_id": experiment_id})
    run_id = run.json()["run"]["info"]["run_id"]
    server.call("admin", "POST", f"{API}/runs/log-metric", json={
        "run_id": run_id, "key": "rmse", "value": 0.3, "timestamp": 0, "step": 0,
    })  # fmt: skip
    artifact = tmp_path_factory.mktemp("shared") / "report.txt"
    artifact.write_text("quarterly numbers\n")
    upload = requests.put(
        f"{server.url}/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/{run_id}/artifacts/report.txt",
        data=artifact.read_bytes(),
        auth=("admin", server.passwords["admin"]),
        timeout=60,
    )
    assert upload.status_code == 200, upload.text
    model = f"shared-model-{uuid.uuid4().hex[:6]}"
    made = server.call("admin", "POST", f"{API}/registered-models/create", json={"name": model})
    assert made.ok, made.text
    version = server.call("admin", "POST", f"{API}/model-versions/create", json={
        "name": model, "source": f"runs:/{run_id}/model", "run_id": run_id,
    })  # fmt: skip
    assert version.ok, version.text
    return {"experiment_id": experiment_id, "run_id": run_id, "name": name, "model": model}


def test_every_person_has_their_own_login(server: Server) -> None:
    for who in PEOPLE:
        response = server.call(who, "GET", f"{API}/users/current")
        assert response.status_code == 200, response.text
        assert response.json()["user"]["username"] == who
    wrong = requests.get(
        f"{server.url}{API}/experiments/search", auth=("alice", "not-her-password"), timeout=30
    )
    assert wrong.status_code == 401


def test_reader_reads_everything(server: Server, shared: dict[str, str], as_user) -> None:
    client = as_user("bob")
    assert client.get_run(shared["run_id"]).data.metrics["rmse"] == 0.3
    assert [f.path for f in client.list_artifacts(shared["run_id"])] == ["report.txt"]
    names = [e.name for e in client.search_experiments()]
    assert shared["name"] in names


WRITES = [
    ("POST", f"{API}/experiments/create", lambda s: {"name": f"bob-{uuid.uuid4().hex[:6]}"}),
    ("POST", f"{API}/runs/create", lambda s: {"experiment_id": s["experiment_id"]}),
    ("POST", f"{API}/runs/log-metric", lambda s: {
        "run_id": s["run_id"], "key": "rmse", "value": 9.9, "timestamp": 0, "step": 1,
    }),
    ("POST", f"{API}/runs/set-tag", lambda s: {"run_id": s["run_id"], "key": "k", "value": "v"}),
    ("POST", f"{API}/runs/delete", lambda s: {"run_id": s["run_id"]}),
    ("POST", f"{API}/experiments/update", lambda s: {
        "experiment_id": s["experiment_id"], "new_name": "hijacked",
    }),
    ("POST", f"{API}/registered-models/create", lambda s: {"name": f"bob-{uuid.uuid4().hex[:6]}"}),
    ("POST", f"{API}/experiments/delete", lambda s: {"experiment_id": s["experiment_id"]}),
    ("DELETE", f"{API}/registered-models/delete", lambda s: {"name": s["model"]}),
    ("DELETE", f"{API}/model-versions/delete", lambda s: {"name": s["model"], "version": "1"}),
    ("POST", GRANT, lambda s: {
        "username": "bob", "resource_type": "experiment", "resource_id": s["experiment_id"],
        "permission": "MANAGE",
    }),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "body"), WRITES, ids=[w[1] for w in WRITES])
def test_reader_cannot_write_anything(
    server: Server, shared: dict[str, str], method: str, path: str, body
) -> None:
    response = server.call("bob", method, path, json=body(shared))
    assert response.status_code == 403, response.text
    assert_shared_intact(server, shared)


def assert_shared_intact(server: Server, shared: dict[str, str]) -> None:
    experiment = server.call(
        "admin", "GET", f"{API}/experiments/get", params={"experiment_id": shared["experiment_id"]}
    )
    assert experiment.json()["experiment"]["lifecycle_stage"] == "active"
    run = server.call("admin", "GET", f"{API}/runs/get", params={"run_id": shared["run_id"]})
    assert run.json()["run"]["info"]["lifecycle_stage"] == "active"
    model = server.call(
        "admin", "GET", f"{API}/registered-models/get", params={"name": shared["model"]}
    )
    assert model.status_code == 200, model.text
    version = server.call(
        "admin",
        "GET",
        f"{API}/model-versions/get",
        params={"name": shared["model"], "version": "1"},
    )
    assert version.status_code == 200, version.text


def test_reader_cannot_change_artifacts(server: Server, shared: dict[str, str]) -> None:
    base = f"/api/2.0/mlflow-artifacts/artifacts/{shared['experiment_id']}/{shared['run_id']}"
    put = server.call("bob", "PUT", f"{base}/artifacts/report.txt", data=b"forged")
    delete = server.call("bob", "DELETE", f"{base}/artifacts/report.txt")
    assert (put.status_code, delete.status_code) == (403, 403)
    get = server.call("bob", "GET", f"{base}/artifacts/report.txt")
    assert get.content == b"quarterly numbers\n"


def test_streamed_downloads_are_refused_to_whoever_may_not_read_the_run(
    server: Server, shared: dict[str, str]
) -> None:
    """The image serves artifact downloads with routes of its own (mlops_kit_app/downloads.py),
    on both of MLflow's paths: each is checked as MLflow's own endpoint was."""
    tail = f"{shared['experiment_id']}/{shared['run_id']}/artifacts/report.txt"
    secret = b"quarterly numbers"
    for prefix in ("/api/2.0", "/ajax-api/2.0"):
        url = f"{server.url}{prefix}/mlflow-artifacts/artifacts/{tail}"
        allowed = server.call("bob", "GET", url.removeprefix(server.url))
        assert allowed.content == secret + b"\n", prefix  # a reader may: the path is served
        attempts = {
            "no credentials": requests.get(url, timeout=60),
            "a wrong password": requests.get(url, auth=("bob", "not-" + "x" * 20), timeout=60),
            "the metrics account": server.call("metrics", "GET", url.removeprefix(server.url)),
        }
        for who, response in attempts.items():
            assert response.status_code in (401, 403), f"{prefix}, {who}: {response.status_code}"
            assert secret not in response.content, f"{prefix}, {who}"


def test_editor_logs_into_shared_experiments_and_registers_models(
    server: Server, shared: dict[str, str], as_user
) -> None:
    client = as_user("alice")
    run = client.create_run(shared["experiment_id"])
    client.log_metric(run.info.run_id, "accuracy", 0.91)
    client.set_terminated(run.info.run_id)
    name = f"churn-{uuid.uuid4().hex[:6]}"
    client.create_registered_model(name)
    version = client.create_model_version(name, f"runs:/{run.info.run_id}/model", run.info.run_id)
    client.set_registered_model_alias(name, "champion", version.version)
    assert client.get_model_version_by_alias(name, "champion").run_id == run.info.run_id
    reader = as_user("bob")
    assert reader.get_model_version_by_alias(name, "champion").version == version.version


def experiment_with_run(server: Server, who: str) -> tuple[str, str]:
    """A new experiment of ``who``'s with one run in it: (experiment id, run id)."""
    experiment_id = server.call(
        who, "POST", f"{API}/experiments/create", json={"name": f"{who}-{uuid.uuid4().hex[:6]}"}
    ).json()["experiment_id"]
    run_id = server.call(
        who, "POST", f"{API}/runs/create", json={"experiment_id": experiment_id}
    ).json()["run"]["info"]["run_id"]
    return experiment_id, run_id


def grant(who: str, resource_type: str, resource_id: str, permission: str = "MANAGE") -> dict:
    return {
        "username": who, "resource_type": resource_type, "resource_id": resource_id,
        "permission": permission,
    }  # fmt: skip


def test_editor_deletes_and_manages_what_she_created(server: Server) -> None:
    experiment = server.call(
        "alice", "POST", f"{API}/experiments/create", json={"name": f"a-{uuid.uuid4().hex[:6]}"}
    )
    assert experiment.ok, experiment.text
    experiment_id = experiment.json()["experiment_id"]
    runs = [
        server.call(
            "alice", "POST", f"{API}/runs/create", json={"experiment_id": experiment_id}
        ).json()["run"]["info"]["run_id"]
        for _ in range(2)
    ]
    model = f"a-model-{uuid.uuid4().hex[:6]}"
    assert server.call("alice", "POST", f"{API}/registered-models/create", json={"name": model}).ok
    for _ in range(2):
        version = server.call("alice", "POST", f"{API}/model-versions/create", json={
            "name": model, "source": f"runs:/{runs[0]}/model", "run_id": runs[0],
        })  # fmt: skip
        assert version.ok, version.text
    # Managing: she may hand her own experiment and model to a colleague.
    for body in (
        grant("dave", "experiment", experiment_id),
        grant("dave", "registered_model", model),
    ):
        shared_out = server.call("alice", "POST", GRANT, json=body)
        assert shared_out.status_code == 200, shared_out.text
    steps = [
        ("POST", f"{API}/runs/delete", {"run_id": runs[1]}),
        ("DELETE", f"{API}/model-versions/delete", {"name": model, "version": "2"}),
        ("DELETE", f"{API}/registered-models/delete", {"name": model}),
        ("POST", f"{API}/experiments/delete", {"experiment_id": experiment_id}),
        ("POST", f"{API}/experiments/restore", {"experiment_id": experiment_id}),
        ("POST", f"{API}/experiments/delete", {"experiment_id": experiment_id}),
    ]
    for method, path, body in steps:
        response = server.call("alice", method, path, json=body)
        assert response.status_code == 200, (
            f"{method} {path}: {response.status_code} {response.text}"
        )
    gone = server.call("alice", "GET", f"{API}/registered-models/get", params={"name": model})
    assert gone.status_code == 404
    deleted = server.call(
        "alice", "GET", f"{API}/experiments/get", params={"experiment_id": experiment_id}
    )
    assert deleted.json()["experiment"]["lifecycle_stage"] == "deleted"


def test_editor_cannot_delete_or_manage_what_others_created(
    server: Server, shared: dict[str, str]
) -> None:
    # Dave, another editor, owns an experiment with a run and a model with a version.
    experiment_id, run_id = experiment_with_run(server, "dave")
    model = f"d-model-{uuid.uuid4().hex[:6]}"
    assert server.call("dave", "POST", f"{API}/registered-models/create", json={"name": model}).ok
    assert server.call("dave", "POST", f"{API}/model-versions/create", json={
        "name": model, "source": f"runs:/{run_id}/model", "run_id": run_id,
    }).ok  # fmt: skip
    # Alice may still write into them (EDIT) ...
    own_run = server.call("alice", "POST", f"{API}/runs/create", json={
        "experiment_id": experiment_id,
    }).json()["run"]["info"]["run_id"]  # fmt: skip
    assert server.call("alice", "POST", f"{API}/model-versions/create", json={
        "name": model, "source": f"runs:/{own_run}/model", "run_id": own_run,
    }).ok  # fmt: skip
    # ... but deletes and manages none of it, the bootstrap admin's shared objects neither.
    attacks = []
    for owner_experiment, owner_run, owner_model in (
        (experiment_id, run_id, model),
        (shared["experiment_id"], shared["run_id"], shared["model"]),
    ):
        attacks += [
            ("POST", f"{API}/runs/delete", {"run_id": owner_run}),
            ("POST", f"{API}/experiments/delete", {"experiment_id": owner_experiment}),
            ("DELETE", f"{API}/model-versions/delete", {"name": owner_model, "version": "1"}),
            ("DELETE", f"{API}/registered-models/delete", {"name": owner_model}),
            ("POST", GRANT, grant("alice", "experiment", owner_experiment)),
            ("POST", GRANT, grant("alice", "registered_model", owner_model)),
            ("POST", GRANT, grant("bob", "experiment", owner_experiment, "EDIT")),
        ]
    attacks += [
        # Her own run in his experiment: runs have no owner in MLflow, the experiment decides.
        ("POST", f"{API}/runs/delete", {"run_id": own_run}),
        # Wildcards and tiers: grants that would reach everyone's objects.
        ("POST", GRANT, grant("alice", "experiment", "*")),
        ("POST", GRANT, grant("alice", "run", "*")),
        ("POST", GRANT, grant("alice", "registered_model_version", "*")),
        ("POST", GRANT, grant("alice", "registered_model", "*")),
    ]
    for method, path, body in attacks:
        response = server.call("alice", method, path, json=body)
        assert response.status_code == 403, f"{method} {path} {body}: {response.text}"
    assert_shared_intact(server, shared)
    for path, params in (
        (f"{API}/experiments/get", {"experiment_id": experiment_id}),
        (f"{API}/runs/get", {"run_id": run_id}),
        (f"{API}/runs/get", {"run_id": own_run}),
    ):
        body = server.call("dave", "GET", path, params=params).json()
        thing = body.get("experiment") or body["run"]["info"]
        assert thing["lifecycle_stage"] == "active"
    kept = server.call("dave", "GET", f"{API}/registered-models/get", params={"name": model})
    assert kept.status_code == 200
    # The owner himself may delete it all, her run in his experiment included.
    assert server.call("dave", "POST", f"{API}/runs/delete", json={"run_id": own_run}).ok
    assert server.call("dave", "DELETE", f"{API}/registered-models/delete", json={"name": model}).ok
    assert server.call(
        "dave", "POST", f"{API}/experiments/delete", json={"experiment_id": experiment_id}
    ).ok


def log_batch(server: Server, who: str, run_id: str, key: str) -> int:
    body = {"run_id": run_id, "metrics": [{"key": key, "value": 1.0, "timestamp": 0, "step": 0}]}
    return server.call(who, "POST", f"{API}/runs/log-batch", json=body).status_code


def test_a_run_the_server_already_knows_is_still_checked_against_current_grants(
    server: Server,
) -> None:
    """The server keeps which experiment a run is in (mlops_kit_auth/runs.py), not who may
    write there: once a run is known from its owner's writes, every other account is still
    judged by its grants at the time of the request."""
    experiment_id, run_id = experiment_with_run(server, "alice")
    for _ in range(3):  # the owner's writes make the run known to the server
        assert log_batch(server, "alice", run_id, "owner") == 200
    # Accounts that may not write there, whatever the server already knows of the run.
    for who in ("bob", "metrics"):
        assert log_batch(server, who, run_id, f"by-{who}") == 403, who
    # Dave (an editor) may write there, until the owner denies him this experiment: the
    # very next request is refused, though the run was known when his grant changed.
    assert log_batch(server, "dave", run_id, "dave-before") == 200
    denied = server.call(
        "alice", "POST", GRANT, json=grant("dave", "experiment", experiment_id, "DENY")
    )
    assert denied.status_code == 200, denied.text
    assert log_batch(server, "dave", run_id, "dave-after") == 403
    # A run id that does not exist is refused (not 404: no oracle), before and after a
    # real run is known.
    assert log_batch(server, "alice", uuid.uuid4().hex, "ghost") == 403
    logged = server.call("alice", "GET", f"{API}/runs/get", params={"run_id": run_id}).json()
    keys = {metric["key"] for metric in logged["run"]["data"]["metrics"]}
    assert keys == {"owner", "dave-before"}, keys


def test_editor_cannot_manage_users(server: Server) -> None:
    response = server.call(
        "alice", "POST", f"{API}/users/create", json={"username": "eve", "password": "x" * 20}
    )
    assert response.status_code == 403


def test_admin_person_manages_users(server: Server) -> None:
    name = f"temp{uuid.uuid4().hex[:6]}"
    created = server.call(
        "carol", "POST", f"{API}/users/create", json={"username": name, "password": "y" * 20}
    )
    assert created.status_code == 200, created.text
    assert server.call("carol", "DELETE", f"{API}/users/delete", json={"username": name}).ok


def test_metrics_account_scrapes_and_reads_nothing_else(
    server: Server, shared: dict[str, str]
) -> None:
    metrics = server.call("metrics", "GET", "/metrics")
    assert metrics.status_code == 200
    assert "mlflow_http_request_total" in metrics.text or "# TYPE" in metrics.text
    found = server.call("metrics", "POST", f"{API}/experiments/search", json={"max_results": 100})
    assert found.status_code == 403 or found.json().get("experiments", []) == []
    for path, params in (
        (f"{API}/experiments/get", {"experiment_id": shared["experiment_id"]}),
        (f"{API}/runs/get", {"run_id": shared["run_id"]}),
    ):
        assert server.call("metrics", "GET", path, params=params).status_code == 403
    create = server.call("metrics", "POST", f"{API}/experiments/create", json={"name": "m"})
    assert create.status_code == 403
    for who in PEOPLE.keys() - {"carol"}:
        assert server.call(who, "GET", "/metrics").status_code == 403


def test_removed_person_loses_access_and_keeps_their_runs(
    server: Server, shared: dict[str, str], as_user
) -> None:
    client = as_user("alice")
    run = client.create_run(shared["experiment_id"])
    client.log_metric(run.info.run_id, "loss", 0.1)
    remaining = {k: v for k, v in PEOPLE.items() if k != "alice"}
    write_people(server.people_dir, remaining, server.passwords)
    server.container.restart()
    server.container.wait_healthy()
    assert server.call("alice", "GET", f"{API}/users/current").status_code == 401
    kept = server.call("bob", "GET", f"{API}/runs/get", params={"run_id": run.info.run_id})
    assert kept.json()["run"]["data"]["metrics"][0]["value"] == 0.1
    # Rotating a password: the old one stops working at the next start.
    server.passwords["bob"], old = new_secret(), server.passwords["bob"]
    write_people(server.people_dir, remaining, server.passwords)
    server.container.restart()
    server.container.wait_healthy()
    assert server.call("bob", "GET", f"{API}/users/current").ok
    stale = requests.get(f"{server.url}{API}/users/current", auth=("bob", old), timeout=30)
    assert stale.status_code == 401


def test_the_admin_password_follows_its_secret_file(server: Server) -> None:
    """Replacing the mounted admin secret and restarting rotates the admin's password (also
    what opens an auth database restored from another environment); the old one is refused."""
    secret = server.people_dir.parent / "secrets" / "admin"
    old, new = server.passwords["admin"], new_secret()
    secret.write_text(new + "\n")
    server.container.restart()
    server.container.wait_healthy()
    current = requests.get(f"{server.url}{API}/users/current", auth=("admin", new), timeout=30)
    assert current.ok, current.text
    assert current.json()["user"]["is_admin"] is True
    stale = requests.get(f"{server.url}{API}/users/current", auth=("admin", old), timeout=30)
    assert stale.status_code == 401
    server.passwords["admin"] = new


@pytest.mark.parametrize(
    ("people", "message"),
    [
        ('[{"name": "admin", "role": "editor"}]', "reserved for the platform's own account"),
        ('[{"name": "dave", "role": "owner"}]', "role 'owner' must be one of"),
        ('{"dave": "editor"}', "must be a list"),
    ],
)
def test_bad_people_list_stops_the_server_with_one_line(
    sandbox: Sandbox, images, tmp_path: Path, people: str, message: str
) -> None:
    directory = tmp_path / "people"
    directory.mkdir()
    (directory / "people.json").write_text(people)
    for name in ("admin", "dave"):
        (directory / f"{name}.password").write_text("p" * 20)
    for path in (directory, *directory.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    secrets = secret_dir(tmp_path / "s", {"db": "x", "admin": new_secret(), "flask": "f"})
    result = sandbox.run_to_exit(
        images.ref("mlflow"),
        env={
            "MLFLOW_DB_HOST": "db-never-reached",
            "MLFLOW_DB_PASSWORD_FILE": "/run/secrets/mlflow/db",
            "MLFLOW_DB_WAIT_SECONDS": "5",
            "MLFLOW_AUTH_ADMIN_PASSWORD_FILE": "/run/secrets/mlflow/admin",
            "MLFLOW_FLASK_SERVER_SECRET_KEY_FILE": "/run/secrets/mlflow/flask",
            "MLFLOW_PEOPLE_DIR": "/run/secrets/people",
            "MLFLOW_ARTIFACTS_DESTINATION": "sftp://mlops@sftp:2222/data/artifacts",
            "MLFLOW_SFTP_PRIVATE_KEY_FILE": "/dev/null",
            "MLFLOW_SFTP_KNOWN_HOSTS_FILE": "/dev/null",
        },
        mounts=[f"{secrets}:/run/secrets/mlflow:ro", f"{directory}:/run/secrets/people:ro"],
    )
    assert_config_error(result, message)
