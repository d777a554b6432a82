"""The MLflow image against the real PostgreSQL and SFTP images, with the stock mlflow client."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import socket
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import mlops_kit_sftp
import psycopg2
import pytest
import requests
from mlflow.tracking import MlflowClient
from mlops_kit_app.metrics import BUILT_LOG as BULK_METRICS_LOG

from tests.images.conftest import (
    CORS_ALLOWED_ORIGIN,
    Mlflow,
    Postgres,
    Sftp,
    sftp_client_files,
    start_postgres,
    tracking_credentials,
)
from tests.support.cors import (
    HOSTILE_ORIGINS,
    acceptance_problems,
    create_experiment,
    delete_experiment,
    refusal_problems,
)
from tests.support.docker import TMP_MIB, Sandbox, assert_config_error, docker, secret_dir
from tests.support.keys import sftp_session

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def client(mlflow_server: Mlflow) -> Iterator[MlflowClient]:
    with tracking_credentials(mlflow_server.url, *mlflow_server.auth):
        yield MlflowClient(mlflow_server.url)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def logged_run(client: MlflowClient, tmp_path_factory: pytest.TempPathFactory) -> dict:
    artifact = tmp_path_factory.mktemp("artifact") / "weights.bin"
    artifact.write_bytes(os.urandom(3 * 1024 * 1024))
    experiment = f"image-test-{uuid.uuid4().hex[:6]}"
    mlflow.set_experiment(experiment)
    with mlflow.start_run() as run:
        mlflow.log_param("alpha", "0.5")
        mlflow.log_metric("rmse", 0.25)
        mlflow.log_artifact(str(artifact))
    return {
        "run_id": run.info.run_id,
        "experiment_id": run.info.experiment_id,
        "artifact": artifact,
        "sha256": sha256(artifact.read_bytes()),
    }


def test_server_runs_as_the_assigned_non_root_uid(mlflow_server: Mlflow) -> None:
    uids = mlflow_server.container.exec("ps", "-eo", "uid=").split()
    assert set(uids) == {str(mlflow_server.container.uid)}


def test_run_is_stored_in_postgres(logged_run: dict, postgres: Postgres) -> None:
    with psycopg2.connect(
        host="127.0.0.1", port=postgres.port, dbname="mlflow", user="mlflow",
        password=postgres.secrets["app"],
    ) as conn, conn.cursor() as cur:  # fmt: skip
        cur.execute(
            "SELECT p.value, m.value FROM runs r JOIN params p ON p.run_uuid = r.run_uuid "
            "JOIN metrics m ON m.run_uuid = r.run_uuid WHERE r.run_uuid = %s AND p.key = 'alpha' "
            "AND m.key = 'rmse'",
            (logged_run["run_id"],),
        )
        assert cur.fetchall() == [("0.5", 0.25)]


def test_the_server_writes_metrics_in_bulk(logged_run: dict, mlflow_server: Mlflow) -> None:
    # logged_run logged a metric: the worker that took it built its store with the bulk writes.
    assert BULK_METRICS_LOG in mlflow_server.container.logs()


def test_the_servers_sftp_sessions_open_on_the_wide_channel(mlflow_server: Mlflow) -> None:
    """The window and packets mlops_kit_sftp asks for, read from a session of the real image."""
    script = (
        "import os\n"
        "from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository\n"
        "repo = get_artifact_repository(os.environ['MLFLOW_ARTIFACTS_DESTINATION'])\n"
        "with repo.pool.get_sftp_connection() as connection:\n"
        "    channel = connection._sftp.sock\n"
        "    print(channel.in_window_size, channel.in_max_packet_size)\n"
    )
    window, packet = mlflow_server.container.exec("python3", "-c", script).split()
    assert int(window) == mlops_kit_sftp.CHANNEL_WINDOW_BYTES
    assert int(packet) == mlops_kit_sftp.CHANNEL_PACKET_BYTES


SERVING_PROCESSES_SCRIPT = """
import glob, os
processes = {}
for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
    if cmdline == f"/proc/{os.getpid()}/cmdline":
        continue  # this script, whose own text names what it looks for
    try:
        args = open(cmdline, "rb").read().replace(b"\\0", b" ").decode()
        maps = open(cmdline[: -len("cmdline")] + "maps").read()
    except OSError:
        continue
    processes[args] = maps
# uvicorn serves in its own process with one worker, else in the workers it spawns.
workers = [maps for args, maps in processes.items() if "spawn_main" in args]
serving = workers or [maps for args, maps in processes.items() if "-m uvicorn" in args]
print(len(serving), sum("/uvloop/" in m and "/httptools/" in m for m in serving))
"""


def test_the_server_runs_on_uvicorns_c_event_loop_and_http_parser(
    mlflow_server: Mlflow,
) -> None:
    """uvloop and httptools (the image's requirements) are what uvicorn picked in each worker."""
    found = mlflow_server.container.exec("python3", "-c", SERVING_PROCESSES_SCRIPT)
    serving, on_both = found.split()
    assert int(serving) > 0, "no uvicorn process found"
    assert on_both == serving


def test_proxied_artifact_lands_on_sftp_byte_for_byte(logged_run: dict, sftp: Sftp) -> None:
    run_dir = f"/data/artifacts/{logged_run['experiment_id']}/{logged_run['run_id']}"
    path = f"{run_dir}/artifacts/weights.bin"
    with sftp_session(sftp.port, "mlops", sftp.mlflow_key.private) as session:
        buffer = io.BytesIO()
        session.getfo(path, buffer)
    assert sha256(buffer.getvalue()) == logged_run["sha256"]


def test_proxied_artifact_reads_back(
    client: MlflowClient, logged_run: dict, tmp_path: Path
) -> None:
    local = client.download_artifacts(logged_run["run_id"], "weights.bin", str(tmp_path))
    assert sha256(Path(local).read_bytes()) == logged_run["sha256"]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


def test_an_artifact_larger_than_the_servers_tmp_goes_both_ways(
    client: MlflowClient, logged_run: dict, tmp_path: Path
) -> None:
    # MLflow's own proxy copies each artifact whole into the server's /tmp (here TMP_MIB),
    # so this one would fail both ways; the image streams it to and from SFTP.
    big = tmp_path / "big.bin"
    with big.open("wb") as stream:
        for _ in range(TMP_MIB + 32):
            stream.write(os.urandom(1024 * 1024))
    client.log_artifact(logged_run["run_id"], str(big))
    local = client.download_artifacts(logged_run["run_id"], "big.bin", str(tmp_path / "down"))
    assert file_sha256(Path(local)) == file_sha256(big)


def basic_auth(server: Mlflow) -> str:
    """The Authorization header line of the server's admin, for hand-written requests."""
    token = base64.b64encode(":".join(server.auth).encode()).decode()
    return f"Authorization: Basic {token}\r\n"


def raw_exchange(server: Mlflow, request: bytes, wait: float = 5) -> bytes:
    """Send ``request`` as written on one new connection and return every byte the server
    sends back until it closes or stays silent for ``wait`` seconds."""
    answers = b""
    with socket.create_connection(("127.0.0.1", server.container.host_port(5000))) as raw:
        raw.settimeout(wait)
        raw.sendall(request)
        try:
            while data := raw.recv(65536):
                answers += data
        except TimeoutError:
            pass  # the connection stayed open: every answer has come by now
    return answers


def artifact_url(server: Mlflow, run: dict, name: str = "") -> str:
    path = f"{run['experiment_id']}/{run['run_id']}/artifacts"
    return f"{server.url}/api/2.0/mlflow-artifacts/artifacts/{path}" + (f"/{name}" if name else "")


def test_downloads_of_what_is_no_file_get_a_clear_4xx(
    mlflow_server: Mlflow, logged_run: dict
) -> None:
    missing = requests.get(artifact_url(mlflow_server, logged_run, "nothing.bin"),
                           auth=mlflow_server.auth, timeout=60)  # fmt: skip
    assert missing.status_code == 404, missing.text
    assert missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    directory = requests.get(artifact_url(mlflow_server, logged_run),
                             auth=mlflow_server.auth, timeout=60)  # fmt: skip
    assert directory.status_code == 400, directory.text
    assert "directory" in directory.json()["message"]


def test_an_upload_the_client_cuts_short_leaves_nothing(
    client: MlflowClient, mlflow_server: Mlflow, logged_run: dict, sftp: Sftp
) -> None:
    # The request promises 8 MiB, sends 1 MiB and hangs up: a lost laptop connection.
    url = artifact_url(mlflow_server, logged_run, "cut.bin")
    path = urllib.parse.urlsplit(url).path
    with socket.create_connection(("127.0.0.1", mlflow_server.container.host_port(5000))) as raw:
        raw.sendall(
            f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{basic_auth(mlflow_server)}"
            f"Content-Length: {8 * 1024 * 1024}\r\n\r\n".encode()
        )
        raw.sendall(os.urandom(1024 * 1024))
    run_dir = f"/data/artifacts/{logged_run['experiment_id']}/{logged_run['run_id']}/artifacts"
    deadline = time.monotonic() + 60
    while True:
        left = sftp.container.exec("find", run_dir, "-name", "*cut.bin*").split()
        if not left or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert left == [], f"the cut upload left {left}"
    assert "cut.bin" not in {a.path for a in client.list_artifacts(logged_run["run_id"])}


@pytest.mark.parametrize("credentials", ["none", "wrong-password"])
def test_an_upload_without_valid_credentials_is_refused_before_its_body_is_read(
    mlflow_server: Mlflow, logged_run: dict, sftp: Sftp, credentials: str
) -> None:
    """A stranger announces a 1 GiB artifact and sends only the headers: the server answers 401
    at once, without waiting for (or joining, mlops_kit_app/bodies.py) any of the body, and
    nothing lands on SFTP."""
    path = urllib.parse.urlsplit(artifact_url(mlflow_server, logged_run, "stranger.bin")).path
    auth = ""
    if credentials == "wrong-password":
        token = base64.b64encode(f"{mlflow_server.auth[0]}:not-the-password".encode()).decode()
        auth = f"Authorization: Basic {token}\r\n"
    request = (
        f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Length: {1024**3}\r\n\r\n"
    ).encode()
    # The body never comes: a server that waited for it would send nothing.
    answer = raw_exchange(mlflow_server, request, wait=10)
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]
    run_dir = f"/data/artifacts/{logged_run['experiment_id']}/{logged_run['run_id']}/artifacts"
    assert sftp.container.exec("find", run_dir, "-name", "*stranger.bin*").split() == []


def test_requests_without_credentials_are_refused(mlflow_server: Mlflow) -> None:
    search = f"{mlflow_server.url}/api/2.0/mlflow/experiments/search?max_results=1"
    assert requests.get(search, timeout=10).status_code == 401
    assert requests.get(search, auth=("admin", "wrong-password"), timeout=10).status_code == 401
    assert requests.get(search, auth=mlflow_server.auth, timeout=10).status_code == 200
    assert requests.get(f"{mlflow_server.url}/health", timeout=10).status_code == 200


def test_only_allowed_host_headers_are_served(mlflow_server: Mlflow) -> None:
    search = f"{mlflow_server.url}/api/2.0/mlflow/experiments/search?max_results=1"

    def status(host: str) -> int:
        headers = {"Host": host}
        return requests.get(
            search, auth=mlflow_server.auth, headers=headers, timeout=10
        ).status_code

    assert status("mlflow.example.com") == 200
    assert status("mlflow.example.com:8443") == 200
    assert status("evil.example.com") == 403


def status_with_hosts(server: Mlflow, hosts: list[str]) -> bytes:
    """The status line of an authenticated search sent with these Host headers, in order."""
    head = "".join(f"Host: {host}\r\n" for host in hosts)
    request = (
        f"GET /api/2.0/mlflow/experiments/search?max_results=1 HTTP/1.1\r\n{head}"
        f"{basic_auth(server)}Connection: close\r\n\r\n"
    )
    return raw_exchange(server, request.encode(), wait=10).split(b"\r\n", 1)[0]


@pytest.mark.parametrize("order", ["foreign-first", "foreign-last"])
def test_a_second_host_header_cannot_slip_past_the_host_check(
    mlflow_server: Mlflow, order: str
) -> None:
    """A proxy may route by one Host header while the server checks another (DNS rebinding
    through a shared front end): with a foreign name among two, the request is refused."""
    allowed, foreign = "mlflow.example.com", "evil.example.com"
    assert status_with_hosts(mlflow_server, [allowed]).endswith(b" 200 OK")  # the probe works
    hosts = [foreign, allowed] if order == "foreign-first" else [allowed, foreign]
    status = status_with_hosts(mlflow_server, hosts)
    assert status.split(b" ")[1] in (b"400", b"403"), status


def smuggling_request(framing: str, smuggled: bytes) -> bytes:
    """A request to /health whose body, read by its Transfer-Encoding (or its first
    Content-Length), ends before ``smuggled``; read by its (last) Content-Length, holds it.
    ``framing`` names the ambiguity; "pipelined" has none: ``smuggled`` follows as a request."""
    if framing == "pipelined":  # no ambiguity: a body-less request, then the next one
        body = smuggled
        headers = ["Content-Length: 0"]
    elif framing == "two-cl":  # the first length says no body: the hidden request comes next
        body = smuggled
        headers = ["Content-Length: 0", f"Content-Length: {len(body)}"]
    else:  # chunked, the body ends before the hidden request
        body = b"0\r\n\r\n" + smuggled
        length = f"Content-Length: {len(body)}"
        headers = {
            "cl-and-te": [length, "Transfer-Encoding: chunked"],
            "te-and-cl": ["Transfer-Encoding: chunked", length],
            "te-padded": [length, "Transfer-Encoding : chunked"],
            "te-listed": [length, "Transfer-Encoding: identity, chunked"],
            "te-tab": [length, "Transfer-Encoding:\tchunked"],
        }[framing]
    head = "\r\n".join(["POST /health HTTP/1.1", "Host: 127.0.0.1", *headers])
    return head.encode() + b"\r\n\r\n" + body


def send_with_hidden_request(server: Mlflow, framing: str) -> tuple[bytes, str]:
    """Send a request with a hidden "create experiment" (valid credentials, so that running it
    would show); the answers on the connection and the experiment's name."""
    name = f"smuggled-{framing}-{uuid.uuid4().hex[:8]}"
    payload = json.dumps({"name": name}).encode()
    hidden = (
        f"POST /api/2.0/mlflow/experiments/create HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"{basic_auth(server)}Content-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    ).encode() + payload
    return raw_exchange(server, smuggling_request(framing, hidden)), name


def test_the_probe_sees_a_hidden_request_that_runs(
    mlflow_server: Mlflow, client: MlflowClient
) -> None:
    """The check below can fail: the same request sent plainly after a body-less one (HTTP
    pipelining, nothing ambiguous) runs, and the probe sees both its answer and its
    experiment."""
    answers, name = send_with_hidden_request(mlflow_server, "pipelined")
    assert answers.count(b"HTTP/1.1 ") == 2, answers.decode(errors="replace")
    assert client.get_experiment_by_name(name) is not None


@pytest.mark.parametrize(
    "framing", ["cl-and-te", "te-and-cl", "two-cl", "te-padded", "te-listed", "te-tab"]
)
def test_a_request_hidden_in_an_ambiguous_body_is_never_run(
    mlflow_server: Mlflow, client: MlflowClient, framing: str
) -> None:
    """Request smuggling, as through a proxy that frames a body one way while the server frames
    it the other: the hidden request must not run. The server may refuse the whole request or
    read the hidden one as body; it may not answer it."""
    answers, name = send_with_hidden_request(mlflow_server, framing)
    assert answers.count(b"HTTP/1.1 ") <= 1, answers.decode(errors="replace")
    assert b"experiment_id" not in answers, answers.decode(errors="replace")
    assert client.get_experiment_by_name(name) is None


@pytest.mark.parametrize("origin", HOSTILE_ORIGINS)
def test_a_foreign_page_cannot_act_with_the_users_credentials(
    mlflow_server: Mlflow, origin: str
) -> None:
    """A page of https://evil.example, or one on the user's own machine (localhost, which MLflow
    alone lets in), with the admin's credentials attached by the browser: creating an
    experiment is refused (JSON and "simple" text/plain), nothing is created, and neither the
    preflight nor any answer lets the page read it (tests/support/cors.py)."""
    name = f"cors-attack-{uuid.uuid4().hex[:8]}"
    problems = refusal_problems(mlflow_server.url, mlflow_server.auth, name, origin)
    assert not problems, "\n".join(problems)


def test_the_servers_own_pages_on_localhost_still_work(mlflow_server: Mlflow) -> None:
    """The UI reached at the server's own local address sends that origin with its writes."""
    own = mlflow_server.url.rstrip("/")
    name = f"cors-own-{uuid.uuid4().hex[:8]}"
    try:
        attempt = create_experiment(mlflow_server.url, mlflow_server.auth, name, own)
        assert attempt.response.status_code == 200, attempt.response.text
    finally:
        delete_experiment(mlflow_server.url, mlflow_server.auth, name)


def test_the_allowed_origin_gets_credentialed_cors(mlflow_server: Mlflow) -> None:
    name = f"cors-allowed-{uuid.uuid4().hex[:8]}"
    problems = acceptance_problems(mlflow_server.url, mlflow_server.auth, name, CORS_ALLOWED_ORIGIN)
    assert not problems, "\n".join(problems)


def test_the_refusal_check_sees_an_accepted_origin(mlflow_server: Mlflow) -> None:
    """The attack's check must fail where the server lets the origin in."""
    name = f"cors-check-{uuid.uuid4().hex[:8]}"
    try:
        problems = refusal_problems(
            mlflow_server.url, mlflow_server.auth, name, CORS_ALLOWED_ORIGIN
        )
    finally:
        delete_experiment(mlflow_server.url, mlflow_server.auth, name)
    assert any("was created" in p for p in problems), problems
    assert any("preflight" in p for p in problems), problems


def test_prometheus_metrics_are_exposed(mlflow_server: Mlflow, logged_run: dict) -> None:
    response = requests.get(f"{mlflow_server.url}/metrics", auth=mlflow_server.auth, timeout=10)
    assert response.status_code == 200
    assert "mlflow_http_request_total" in response.text


def test_artifacts_still_flow_after_sftp_restarts(
    client: MlflowClient, logged_run: dict, sftp: Sftp, tmp_path: Path
) -> None:
    sftp.container.restart()
    sftp.container.wait_healthy()
    fresh = tmp_path / "after-restart.txt"
    fresh.write_text("written after the SFTP server restarted")
    client.log_artifact(logged_run["run_id"], str(fresh))
    local = client.download_artifacts(
        logged_run["run_id"], "after-restart.txt", str(tmp_path / "d")
    )
    assert Path(local).read_text() == fresh.read_text()


def test_everything_survives_restarting_every_container(
    client: MlflowClient,
    logged_run: dict,
    mlflow_server: Mlflow,
    postgres: Postgres,
    sftp: Sftp,
    tmp_path: Path,
) -> None:
    for container in (postgres.container, sftp.container, mlflow_server.container):
        container.restart()
    for container in (postgres.container, sftp.container, mlflow_server.container):
        container.wait_healthy()
    # Docker may publish a new host port after a restart; ask again.
    mlflow.set_tracking_uri(mlflow_server.url)
    client = MlflowClient(mlflow_server.url)
    run = client.get_run(logged_run["run_id"])
    assert run.data.params == {"alpha": "0.5"}
    local = client.download_artifacts(logged_run["run_id"], "weights.bin", str(tmp_path))
    assert sha256(Path(local).read_bytes()) == logged_run["sha256"]


DIRECT_CLIENT = """
import hashlib, json, os, sys, tempfile, mlflow
from mlflow.tracking import MlflowClient
mlflow.set_tracking_uri("http://mlflow-direct:5000")
mlflow.set_experiment("direct-sftp")
payload = os.urandom(256 * 1024)
with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "direct.bin")
    open(path, "wb").write(payload)
    with mlflow.start_run() as run:
        mlflow.log_artifact(path)
    back = MlflowClient().download_artifacts(run.info.run_id, "direct.bin", tmp + "/d")
    print(json.dumps({
        "run_id": run.info.run_id,
        "artifact_uri": run.info.artifact_uri,
        "sha_logged": hashlib.sha256(payload).hexdigest(),
        "sha_read": hashlib.sha256(open(back, "rb").read()).hexdigest(),
    }))
"""


def test_direct_sftp_artifact_root(
    sandbox: Sandbox, images, postgres: Postgres, sftp: Sftp, tmp_path: Path
) -> None:
    """Clients write to sftp:// themselves; the server only lists (auth off in this mode)."""
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "db").write_text(postgres.secrets["app"])
    (secrets_dir / "db").chmod(0o644)
    secrets_dir.chmod(0o755)
    ssh_dir = sftp_client_files(tmp_path / "sftp", sftp)
    root = "sftp://mlops@sftp:2222/data/artifacts/direct"
    server = sandbox.run(
        "mlflow-direct",
        images.ref("mlflow"),
        env={
            "MLFLOW_DB_HOST": "db",
            "MLFLOW_DB_PASSWORD_FILE": "/run/secrets/mlflow/db",
            "MLFLOW_AUTH_ENABLED": "false",
            "MLFLOW_SERVE_ARTIFACTS": "false",
            "MLFLOW_DEFAULT_ARTIFACT_ROOT": root,
            "MLFLOW_ALLOWED_HOSTS": "mlflow-direct",
        },
        mounts=[f"{secrets_dir}:/run/secrets/mlflow:ro", f"{ssh_dir}:/etc/mlflow/sftp:ro"],
        publish=[5000],
    )
    server.wait_healthy()
    # The client side of direct mode: a key, known_hosts with a bare host line, ~/.ssh/config.
    home = tmp_path / "client-home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_bytes(sftp.mlflow_key.private.read_bytes())
    known = (ssh_dir / "known_hosts").read_text().replace("[sftp]:2222", "sftp")
    (home / ".ssh" / "known_hosts").write_text(known)
    (home / ".ssh" / "config").write_text("Host sftp\n  IdentityFile ~/.ssh/id_rsa\n")
    (home / "client.py").write_text(DIRECT_CLIENT)
    for path in (home, home / ".ssh", *home.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    result = sandbox.run_to_exit(
        images.ref("mlflow"),
        env={"HOME": "/client"},
        mounts=[f"{home}:/client:ro"],
        entrypoint="/opt/mlflow/bin/python",
        command=["/client/client.py"],
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["artifact_uri"].startswith(root)
    assert report["sha_read"] == report["sha_logged"]
    listing = requests.get(
        f"http://127.0.0.1:{server.host_port(5000)}/api/2.0/mlflow/artifacts/list",
        params={"run_id": report["run_id"]},
        timeout=30,
    ).json()
    assert [f["path"] for f in listing["files"]] == ["direct.bin"]
    remote = report["artifact_uri"].removeprefix("sftp://mlops@sftp:2222") + "/direct.bin"
    with sftp_session(sftp.port, "mlops", sftp.mlflow_key.private) as session:
        assert session.stat(remote).st_size == 256 * 1024


def test_no_secret_in_docker_inspect_or_process_lists(
    sandbox: Sandbox, mlflow_server: Mlflow, postgres: Postgres, sftp: Sftp, logged_run: dict
) -> None:
    secret_values = [*postgres.secrets.values(), *mlflow_server.secrets.values()]
    for container in (postgres.container, sftp.container, mlflow_server.container):
        inspect = docker("inspect", container.name).stdout
        processes = container.exec("ps", "-eo", "args") + container.exec("ps", "auxww")
        for value in secret_values:
            assert value not in inspect, f"a secret shows in docker inspect {container.name}"
            assert value not in processes, f"a secret shows in ps inside {container.name}"
        # The check above must be able to fail: the secret files are there to be read.
    assert postgres.secrets["app"] in mlflow_server.container.exec("cat", "/run/secrets/mlflow/db")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "MLFLOW_DB_HOST is required"),
        ({"MLFLOW_DB_HOST": "db"}, "MLFLOW_DB_PASSWORD is required"),
        (
            {"MLFLOW_DB_HOST": "db", "MLFLOW_DB_PASSWORD": "x"},
            "MLFLOW_ARTIFACTS_DESTINATION is required",
        ),
        (
            {
                "MLFLOW_DB_HOST": "db", "MLFLOW_DB_PASSWORD": "x",
                "MLFLOW_ARTIFACTS_DESTINATION": "sftp://mlops@sftp:2222/data/artifacts",
                "MLFLOW_AUTH_ADMIN_PASSWORD": "short", "MLFLOW_FLASK_SERVER_SECRET_KEY": "k",
            },
            "MLFLOW_AUTH_ADMIN_PASSWORD is 5 characters long",
        ),
        (
            {
                "MLFLOW_DB_HOST": "db", "MLFLOW_DB_PASSWORD": "x", "MLFLOW_AUTH_ENABLED": "false",
                "MLFLOW_ARTIFACTS_DESTINATION": "sftp://mlops@sftp:2222/data/artifacts",
            },
            "MLFLOW_SFTP_PRIVATE_KEY_FILE=/etc/mlflow/sftp/id_rsa is not readable",
        ),
        (
            {
                "MLFLOW_DB_HOST": "db", "MLFLOW_DB_PASSWORD": "x", "MLFLOW_AUTH_ENABLED": "false",
                "MLFLOW_ARTIFACTS_DESTINATION": "file:///tmp/a", "MLFLOW_WORKERS": "many",
            },
            "MLFLOW_WORKERS='many' must be",
        ),
    ],
)  # fmt: skip
def test_bad_configuration_fails_at_once_with_one_line(
    sandbox: Sandbox, images, env: dict[str, str], message: str
) -> None:
    result = sandbox.run_to_exit(images.ref("mlflow"), env=env)
    assert_config_error(result, message)


def mlflow_without_auth(
    sandbox: Sandbox, images, tmp_path: Path, db_name: str
) -> tuple[Any, dict[str, str], list[str]]:
    """A fresh PostgreSQL, and the env and mounts of an MLflow (auth off) that uses it."""
    db = start_postgres(sandbox, images, tmp_path, name=db_name)
    secrets_dir = secret_dir(tmp_path / "secrets", {"db": db.secrets["app"]})
    env = {
        "MLFLOW_DB_HOST": db_name,
        "MLFLOW_DB_PASSWORD_FILE": "/run/secrets/mlflow/db",
        "MLFLOW_AUTH_ENABLED": "false",
        "MLFLOW_ARTIFACTS_DESTINATION": "file:///tmp/artifacts",
    }
    return db, env, [f"{secrets_dir}:/run/secrets/mlflow:ro"]


def test_a_schema_from_a_newer_mlflow_stops_the_server_with_the_fix(
    sandbox: Sandbox, images, tmp_path: Path
) -> None:
    """A rolled-back image on a database a newer MLflow migrated: refuse at once, change nothing
    (serving or `mlflow db upgrade` would fail later with "Can't locate revision")."""
    db, env, mounts = mlflow_without_auth(sandbox, images, tmp_path, "db-newer")
    migrated = sandbox.run_to_exit(
        images.ref("mlflow"), env=env, mounts=mounts, command=["migrate"], timeout=300
    )
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    conn = psycopg2.connect(
        host="127.0.0.1", port=db.port, dbname="mlflow", user="mlflow",
        password=db.secrets["app"], connect_timeout=5,
    )  # fmt: skip
    with conn, conn.cursor() as cur:
        cur.execute("UPDATE alembic_version SET version_num = 'f0f0f0f0f0f0'")
    for command in ("server", "migrate", "wait-schema"):
        result = sandbox.run_to_exit(
            images.ref("mlflow"), env=env, mounts=mounts, command=[command], timeout=300
        )
        assert result.returncode == 78, result.stderr[-3000:]
        error = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert error == [
            "error: the tracking database is at schema revision f0f0f0f0f0f0, which MLflow "
            f"{images.mlflow_version} does not know: a newer MLflow migrated it. Nothing was "
            "changed. Deploy that newer MLflow again, or restore the backup taken before the "
            "upgrade (make restore; docs/operations.md)"
        ]
    with conn, conn.cursor() as cur:
        cur.execute("SELECT version_num FROM alembic_version")
        assert cur.fetchall() == [("f0f0f0f0f0f0",)]
    conn.close()


def test_wait_schema_holds_the_server_until_a_migration_elsewhere_finishes(
    sandbox: Sandbox, images, tmp_path: Path
) -> None:
    """The chart's server pods wait in `wait-schema` while its Job migrates; the Job's log says
    how many other sessions were on the databases (a server left running shows there)."""
    db, env, mounts = mlflow_without_auth(sandbox, images, tmp_path, "db-wait")
    waiting = sandbox.run("wait-schema", images.ref("mlflow"), env=env, mounts=mounts,
                          command=["wait-schema"])  # fmt: skip
    deadline = time.monotonic() + 120
    while "waiting for the schema migration" not in waiting.logs():
        assert waiting.inspect()["State"]["Status"] == "running", waiting.log_tail()
        assert time.monotonic() < deadline, waiting.log_tail()
        time.sleep(1)
    assert "tracking at none (head " in waiting.logs()
    # A client holding a session on the tracking database counts as another session.
    conn = psycopg2.connect(
        host="127.0.0.1", port=db.port, dbname="mlflow", user="mlflow",
        password=db.secrets["app"], connect_timeout=5,
    )  # fmt: skip
    try:
        migrated = sandbox.run_to_exit(
            images.ref("mlflow"), env=env, mounts=mounts, command=["migrate"], timeout=300
        )
    finally:
        conn.close()
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    assert "other sessions on the databases while migrating: 1" in migrated.stderr
    exit_code = docker("wait", waiting.name, timeout=120).stdout.strip()
    assert exit_code == "0", waiting.log_tail()
    assert "both schemas are at this MLflow's head" in waiting.logs()
    # Alone on the databases, the next migration counts none (the waiting polls never count).
    again = sandbox.run_to_exit(
        images.ref("mlflow"), env=env, mounts=mounts, command=["migrate"], timeout=300
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "other sessions on the databases while migrating: 0" in again.stderr


def test_a_migration_runs_with_the_database_password_alone(
    sandbox: Sandbox, images, postgres: Postgres, tmp_path: Path
) -> None:
    """What the chart's migration Job mounts: no admin password, Flask key or artifact store
    settings (auth on, so the auth database migrates too)."""
    secrets = secret_dir(tmp_path / "secrets", {"db": postgres.secrets["app"]})
    result = sandbox.run_to_exit(
        images.ref("mlflow"),
        env={"MLFLOW_DB_HOST": "db", "MLFLOW_DB_PASSWORD_FILE": "/run/secrets/mlflow/db"},
        command=["migrate"],
        mounts=[f"{secrets}:/run/secrets/mlflow:ro"],
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "migrating the auth database" in result.stderr
    assert "migrations done" in result.stderr
