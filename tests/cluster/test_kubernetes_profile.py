"""The chart and the mlops_kubernetes role on the throwaway cluster (environment `cluster`), in
order: cold deploy on the previous MLflow release, its upgrade to the pinned one (a refused
downgrade and the rollback on the way), an unchanged second deploy, the smoke suite through
kubectl, `helm test`, every pod deleted and killed under logging load, a helm upgrade while 2
MLflow replicas serve, smoke naming the fix when the port-forward is gone, destroy that keeps
the data, redeploy, backup and restore through the API, an upgrade that backs up first, a
Docker backup moved to the release and back, a release with fullnameOverride and its artifacts
on a real S3 store, one with HTTPS on MLflow itself, and a purge.
Starting on the old release spares the rehearsal a purge and a second cold deploy. The tests
share one release, so they run in file order and stop at the first failure (pytest -x in
mk/cluster.mk).
Needs `make cluster` (the make target starts it)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import paramiko
import pytest
import requests
from mlopskit.backup import verify
from mlopskit.environments import parse_connection_env
from mlopskit.k8s_tools import find_tool
from mlopskit.stack import load_stack
from mlopskit.versions import VERSIONS_FILE, image_set, read_env_file

from tests.cluster.cluster_support import (
    KUBECONFIG,
    PERSON,
    Env,
    check_persistence,
    health,
    port_answers,
    stop,
    unrelated_process,
    wait_for,
)
from tests.cluster.load import MetricLoad, Prober
from tests.e2e.e2e_support import REPO_ROOT, ansible_playbook, make, recap_changed
from tests.smoke.smoke_support import connect_sftp
from tests.support.docker import Sandbox
from tests.support.dvc import (
    clone_without_data,
    init_project,
    run_dvc,
    use_s3_remote,
    write_s3_credentials,
)
from tests.support.hostile import OTHER_USERS, assert_unreadable
from tests.support.s3store import bridge_gateway, start_s3store
from tests.support.tls import assert_https_only, new_ca

ENV = Env(name="cluster", namespace="mlops", release="mlops")
# The release the upgrade rehearsal starts on, and the pinned one (images/versions.env).
OLD_MLFLOW = read_env_file(VERSIONS_FILE)["MLFLOW_UPGRADE_FROM"]
NEW_MLFLOW = image_set(mlflow_version="").mlflow_version
MLFLOW_PORT = 15100
SFTP_PORT = 12322


def purge(env: Env = ENV) -> None:
    result = make("destroy", ENV=env.name, PURGE="1", YES="1")
    assert result.returncode == 0, result.explain()


@pytest.fixture(scope="module", autouse=True)
def fresh_release() -> Iterator[None]:
    assert KUBECONFIG.is_file(), "no cluster: run `make cluster` (make test-cluster does)"
    purge()
    yield
    ENV.save_timings()
    # After a failure: the backups outlive the purge by design, but these were the test's own
    # (on success test_purge_removes_everything has checked and removed them).
    deployed = (ENV.build_dir / "stack.json").is_file()
    backup_root = load_stack(ENV.name).backup_dir if deployed else None
    purge()
    if backup_root is not None:
        shutil.rmtree(backup_root, ignore_errors=True)


def test_cold_deploy_leaves_unrelated_processes_alone():
    """A stale port-forward pid file naming someone else's process must not get it killed.
    The release starts on the previous MLflow, which the next test upgrades (a cold deploy of
    the pinned one is test_fullname_override_deploys_and_purges's, and the OpenShift profile's)."""
    built = make("images", MLFLOW_VERSION=OLD_MLFLOW)
    assert built.returncode == 0, built.explain()
    bystander = unrelated_process()
    ENV.build_dir.mkdir(parents=True, exist_ok=True)
    (ENV.build_dir / "port-forward-mlflow.pid").write_text(f"{bystander.pid}\n")
    try:
        result = make("deploy", ENV=ENV.name, MLFLOW_VERSION=OLD_MLFLOW)
        assert result.returncode == 0, result.explain()
        ENV.timings[f"cold deploy (MLflow {OLD_MLFLOW})"] = result.seconds
        assert bystander.poll() is None, "make deploy killed the process of a stale pid file"
    finally:
        stop(bystander)
    assert "MLFLOW_TRACKING_PASSWORD = ********" in result.output, result.explain()
    assert f"MLflow UI at http://127.0.0.1:{MLFLOW_PORT}/" in result.output
    assert health(ENV.tracking_uri()) == 200
    for private in (ENV.connection_file(), ENV.build_dir / "admin.env"):
        assert private.stat().st_mode & 0o777 == 0o600, private


def migration_jobs() -> list[dict]:
    return ENV.get("jobs", "-l", f"app.kubernetes.io/instance={ENV.release},"
                   "app.kubernetes.io/component=migrate")  # fmt: skip


def job_image(job: dict) -> str:
    return str(job["spec"]["template"]["spec"]["containers"][0]["image"])


def mlflow_pods() -> list[dict]:
    return ENV.get("pods", "-l", f"app.kubernetes.io/instance={ENV.release},"
                   "app.kubernetes.io/component=mlflow")  # fmt: skip


def serving_release() -> set[str]:
    """The MLflow release every MLflow pod runs (its image tag)."""
    return {
        container["image"].rsplit(":", 1)[1]
        for pod in mlflow_pods()
        for container in pod["spec"]["containers"]
        if container["name"] == "mlflow"
    }


def test_upgrade_across_mlflow_releases_refused_downgrade_and_rollback(tmp_path: Path):
    """The cold-deployed release on the previous MLflow (MLFLOW_UPGRADE_FROM): `make upgrade`
    backs up, stops the old server, migrates once in a Job, serves the pinned release with the
    data; deploying
    the old release again is refused with the backup named, the new one still serving; the
    runbook's rollback (restore that backup with the old release) serves the old release on the
    data of the backup. Ends on the pinned release for the tests after it."""
    assert serving_release() == {OLD_MLFLOW}
    connection = ENV.connection()
    old_run, digest = log_run_with_artifact(connection, tmp_path / "old")
    root = load_stack(ENV.name).backup_dir
    assert root is not None
    before = set(root.iterdir()) if root.exists() else set()

    upgraded = make("upgrade", ENV=ENV.name)
    assert upgraded.returncode == 0, upgraded.explain()
    ENV.timings[f"upgrade {OLD_MLFLOW} -> {NEW_MLFLOW} (backup, stop, Job, start)"] = (
        upgraded.seconds
    )
    (taken,) = set(root.iterdir()) - before
    assert taken.name.endswith("-before-upgrade"), taken
    assert verify(taken)["images"]["mlflow"].endswith(f":{OLD_MLFLOW}")
    (job,) = migration_jobs()
    assert job_image(job).endswith(f":{NEW_MLFLOW}")
    logs = ENV.kubectl("logs", "-n", ENV.namespace, f"job/{job['metadata']['name']}",
                       "-c", "migrate")  # fmt: skip
    log = logs.stdout + logs.stderr
    assert "migrating the tracking database" in log, log
    # The old server was gone before the Job migrated: no session but the Job's own.
    assert "other sessions on the databases while migrating: 0" in log, log
    assert serving_release() == {NEW_MLFLOW}
    for pod in mlflow_pods():
        init = [c["name"] for c in pod["spec"]["initContainers"]]
        assert "wait-schema" in init, init
        assert "migrate" not in init, init
    assert read_run(connection, old_run, tmp_path / "upgraded") == (0.25, digest)
    new_run, _ = log_run_with_artifact(connection, tmp_path / "new")

    refused = make("deploy", ENV=ENV.name, MLFLOW_VERSION=OLD_MLFLOW)
    assert refused.returncode != 0, refused.explain()
    said = " ".join(refused.output.split())  # ansible folds long messages
    assert f"which MLflow {OLD_MLFLOW} does not know" in said, refused.explain()
    assert f"make restore ENV={ENV.name} FROM={taken} YES=1" in said, refused.explain()
    wait_for(lambda: health(ENV.tracking_uri()) == 200, 120, "MLflow serving after the refusal")
    # The refused release's pods may still be terminating.
    wait_for(lambda: serving_release() == {NEW_MLFLOW}, 120, f"only MLflow {NEW_MLFLOW} pods")
    assert read_run(connection, new_run, tmp_path / "after-refusal")[0] == 0.25

    rolled_back = make("restore", ENV=ENV.name, FROM=str(taken), YES="1",
                       MLFLOW_VERSION=OLD_MLFLOW)  # fmt: skip
    assert rolled_back.returncode == 0, rolled_back.explain()
    ENV.timings[f"rollback to {OLD_MLFLOW} (restore and deploy)"] = rolled_back.seconds
    assert serving_release() == {OLD_MLFLOW}
    assert read_run(connection, old_run, tmp_path / "rolled-back") == (0.25, digest)
    # The run made after the upgrade is gone (the admin gets 404 for a missing run).
    admin = parse_connection_env((ENV.build_dir / "admin.env").read_text())
    assert tracking_status(admin, f"/api/2.0/mlflow/runs/get?run_id={new_run}") == 404

    again = make("upgrade", ENV=ENV.name)
    assert again.returncode == 0, again.explain()
    assert serving_release() == {NEW_MLFLOW}
    assert read_run(connection, old_run, tmp_path / "again") == (0.25, digest)


def test_second_deploy_changes_nothing():
    pods_before = ENV.names("pods")
    result = make("deploy", ENV=ENV.name)
    assert result.returncode == 0, result.explain()
    ENV.timings["warm deploy"] = result.seconds
    assert recap_changed(result.output) == {"localhost": 0}, result.explain()
    assert ENV.names("pods") == pods_before, "an unchanged deploy restarted pods"


def test_smoke_through_kubectl():
    result = make("smoke", ENV=ENV.name)
    ENV.timings["smoke"] = result.seconds
    assert result.returncode == 0, result.explain()
    assert " passed" in result.output


def test_helm_test():
    result = ENV.helm("test", ENV.release, "--logs", "--timeout", "5m")
    ENV.timings["helm test"] = result.seconds
    assert result.returncode == 0, result.explain()
    assert "Phase:          Succeeded" in result.output, result.explain()


def container_id(pod: str, container: str) -> str:
    """The Docker container dockershim runs for ``container`` of ``pod``."""
    out = subprocess.run(
        ["docker", "ps", "-q", "--filter", f"label=io.kubernetes.pod.name={pod}",
         "--filter", f"label=io.kubernetes.container.name={container}"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert len(out) == 1, f"{pod}/{container}: containers {out}"
    return out[0]


def wait_component_ready(component: str) -> None:
    selector = f"app.kubernetes.io/instance={ENV.release},app.kubernetes.io/component={component}"
    ENV.kubectl(
        "wait", "-n", ENV.namespace, "--for=condition=Ready", "pod", "-l", selector,
        "--timeout=300s",
    )  # fmt: skip


CONTAINERS = {"postgresql": "postgresql", "sftp": "sftp", "mlflow": "mlflow"}


def test_no_acknowledged_write_is_lost_when_pods_die():
    """Each pod deleted, then each main container killed with SIGKILL, while a client logs.

    The client talks to the port-forward of `make deploy`, so writes resuming after the MLflow
    pod is replaced also prove the port-forward follows a restarted pod."""
    with MetricLoad(ENV.connection()) as load:
        wait_for(lambda: len(load.acked) > 20, 120, "the load starting")
        for component, container in CONTAINERS.items():
            for how in ("delete", "kill -9"):
                mark = load.acked[-1] if load.acked else -1
                (pod,) = ENV.names("pods", f"app.kubernetes.io/component={component}")
                if how == "delete":
                    ENV.kubectl("delete", "pod", "-n", ENV.namespace, pod, "--wait=true")
                else:
                    subprocess.run(
                        ["docker", "kill", "--signal", "KILL", container_id(pod, container)],
                        check=True, capture_output=True,
                    )  # fmt: skip
                    time.sleep(2)
                wait_component_ready(component)
                wait_for(
                    lambda mark=mark: load.acked_since(mark) > 20, 180,
                    f"writes resuming after {how} of {component}",
                )  # fmt: skip
    lost_steps, lost_artifacts = load.lost()
    print(f"[cluster] under pod kills: {len(load.acked)} writes acknowledged, "
          f"{load.failures} refused")  # fmt: skip
    assert not lost_steps, f"acknowledged metric steps lost: {lost_steps}"
    assert not lost_artifacts, f"acknowledged artifacts lost: {lost_artifacts}"
    assert len(load.acked_artifacts) > 10


def deploy_replicas(**values: object) -> None:
    overrides = json.dumps({"mlops_kubernetes_values": {"mlflow": {"replicaCount": 2, **values}}})
    deploy_dir = REPO_ROOT / "deploy" / ENV.name
    result = ansible_playbook(
        "deploy.yml", deploy_dir / "inventory.yml", deploy_dir / "settings.yml", ENV.name,
        "-e", overrides,
    )  # fmt: skip
    assert result.returncode == 0, result.explain()


def test_helm_upgrade_keeps_two_replicas_serving():
    """A changed value rolls the 2 MLflow replicas one by one; the Service never stops answering."""
    deploy_replicas()
    (service,) = ENV.get("svc", "-l", f"app.kubernetes.io/instance={ENV.release},"
                         "app.kubernetes.io/component=mlflow")  # fmt: skip
    connection = ENV.connection()
    url = (
        f"http://{service['spec']['clusterIP']}:5000"
        "/api/2.0/mlflow/experiments/search?max_results=1"
    )
    # The pod of the 1-replica ReplicaSet may still be terminating when helm's wait returns.
    wait_for(
        lambda: len(ENV.names("pods", "app.kubernetes.io/component=mlflow")) == 2,
        120, "exactly the 2 MLflow pods of the new ReplicaSet",
    )  # fmt: skip
    pods_before = ENV.names("pods", "app.kubernetes.io/component=mlflow")
    with Prober(
        url, connection["MLFLOW_TRACKING_USERNAME"], connection["MLFLOW_TRACKING_PASSWORD"]
    ) as prober:
        time.sleep(3)
        started = time.monotonic()
        deploy_replicas(podAnnotations={"mlops-kit.test/rollout": str(time.time_ns())})
        ENV.timings["helm upgrade, 2 replicas"] = time.monotonic() - started
        # helm's wait ends when the new pods are ready; the last old one may still be
        # terminating (listed until its graceful shutdown ends). Probe until it is gone.
        wait_for(
            lambda: not set(ENV.names("pods", "app.kubernetes.io/component=mlflow"))
            & set(pods_before),
            120, "the old ReplicaSet's pods gone",
        )  # fmt: skip
    assert prober.ok > 20
    assert prober.failed == [], f"{len(prober.failed)} failed requests: {prober.failed[:5]}"
    # The next `make deploy` (after the port-forward test) returns to the environment's 1 replica.


def test_smoke_names_the_fix_when_the_port_forward_is_gone():
    forward = load_stack(ENV.name).service("mlflow")
    assert forward.pid_file is not None, "stack.json records no MLflow port-forward"
    pid = int(forward.pid_file.read_text())
    os.killpg(pid, signal.SIGTERM)
    wait_for(lambda: not port_answers(MLFLOW_PORT), 30, "the port-forward stopping")
    result = make("smoke", ENV=ENV.name)
    assert result.returncode != 0
    assert f"make deploy ENV={ENV.name}` starts it again" in result.output, result.explain()
    assert "port-forward-mlflow.log" in result.output
    redeploy = make("deploy", ENV=ENV.name)
    assert redeploy.returncode == 0, redeploy.explain()
    assert health(ENV.tracking_uri()) == 200


def test_destroy_keeps_claims_and_secrets():
    claims, secrets = ENV.names("pvc"), ENV.names("secrets", "app.kubernetes.io/managed-by=Helm")
    assert len(claims) == 2, claims
    result = make("destroy", ENV=ENV.name)
    assert result.returncode == 0, result.explain()
    ENV.timings["destroy"] = result.seconds
    assert ENV.names("pvc") == claims
    assert ENV.names("secrets", "app.kubernetes.io/managed-by=Helm") == secrets
    assert ENV.names("pods") == [], "destroy left pods (the helm test pod?)"
    assert not port_answers(MLFLOW_PORT), "destroy left the port-forward"


def test_redeploy_finds_every_run():
    result = make("deploy", ENV=ENV.name)
    assert result.returncode == 0, result.explain()
    ENV.timings["deploy after destroy"] = result.seconds
    persisted = check_persistence(ENV)
    assert persisted.returncode == 0, persisted.explain()
    assert "persistence ok" in persisted.output


def tracking_status(connection: dict[str, str], path: str) -> int:
    return requests.get(
        connection["MLFLOW_TRACKING_URI"] + path, timeout=60,
        auth=(connection["MLFLOW_TRACKING_USERNAME"], connection["MLFLOW_TRACKING_PASSWORD"]),
    ).status_code  # fmt: skip


def test_backup_and_restore_through_the_api():
    """make backup and make restore with kubectl only: after a restore, a run made and a
    password rotated after the backup are undone, and every recorded run, model and DVC
    object is back."""
    result = make("backup", ENV=ENV.name)
    assert result.returncode == 0, result.explain()
    ENV.timings["backup"] = result.seconds
    backup_dir = Path(result.output.strip().splitlines()[-1])
    manifest = verify(backup_dir)
    assert manifest["target"] == "kubernetes"
    assert manifest["images"]["mlflow"].endswith(f":{image_set().mlflow_version}")
    assert any(name.startswith("sftp/dvc/") for name in manifest["files"]), "no DVC object"
    secrets = json.loads((backup_dir / "kubernetes-secrets.json").read_text())
    assert set(secrets) >= set(ENV.names("secrets", "app.kubernetes.io/component=postgresql"))
    # Another user of the controller reads no secret, dump or person's key of the backup.
    private = [
        backup_dir / "kubernetes-secrets.json", *backup_dir.glob("postgresql-*.dump"),
        *(p for p in (backup_dir / "people").rglob("*") if p.is_file()),
    ]  # fmt: skip
    assert len(private) > 3, private
    for uid_gid in OTHER_USERS:
        assert_unreadable(private, uid_gid)

    before = ENV.connection()
    client = mlflow.MlflowClient(before["MLFLOW_TRACKING_URI"])
    with pytest.MonkeyPatch.context() as env:
        for key, value in before.items():
            env.setenv(key, value)
        experiment = client.create_experiment(f"after-backup-{time.time_ns()}")
        later_run = client.create_run(experiment).info.run_id
    # The admin, for whom a missing run is a 404 (a person gets a 403 for it, as for any run
    # they may not read).
    admin = parse_connection_env((ENV.build_dir / "admin.env").read_text())
    assert tracking_status(admin, f"/api/2.0/mlflow/runs/get?run_id={later_run}") == 200
    rotated = make("rotate-user", ENV=ENV.name, NAME=PERSON)
    assert rotated.returncode == 0, rotated.explain()
    assert tracking_status(before, "/api/2.0/mlflow/experiments/search?max_results=1") == 401

    restored = make("restore", ENV=ENV.name, FROM=str(backup_dir), YES="1")
    assert restored.returncode == 0, restored.explain()
    ENV.timings["restore (with its safety backup and deploy)"] = restored.seconds
    assert ENV.connection() == before, "the person's restored connection.env differs"
    persisted = check_persistence(ENV)
    assert persisted.returncode == 0, persisted.explain()
    assert "persistence ok" in persisted.output
    assert tracking_status(admin, f"/api/2.0/mlflow/runs/get?run_id={later_run}") == 404


def test_upgrade_backs_up_first():
    """`make upgrade` on a release: a -before-upgrade backup, complete, then the deploy."""
    root = load_stack(ENV.name).backup_dir
    assert root is not None
    before = set(root.iterdir())
    result = make("upgrade", ENV=ENV.name)
    assert result.returncode == 0, result.explain()
    ENV.timings["upgrade with the same versions (backup first)"] = result.seconds
    (taken,) = set(root.iterdir()) - before
    assert taken.name.endswith("-before-upgrade"), taken
    assert verify(taken)["target"] == "kubernetes"
    assert health(ENV.tracking_uri()) == 200


def log_run_with_artifact(connection: dict[str, str], tmp_path: Path) -> tuple[str, str]:
    """As the person of `connection`, with the stock client: a run with one artifact; return
    the run's id and the artifact's SHA-256."""
    tmp_path.mkdir(parents=True)
    artifact = tmp_path / "weights.bin"
    artifact.write_bytes(os.urandom(300_000))
    with pytest.MonkeyPatch.context() as env:
        for key, value in connection.items():
            env.setenv(key, value)
        client = mlflow.MlflowClient(connection["MLFLOW_TRACKING_URI"])
        experiment = client.create_experiment(f"moved-{time.time_ns()}")
        run_id = client.create_run(experiment).info.run_id
        client.log_metric(run_id, "loss", 0.25)
        client.log_artifact(run_id, str(artifact))
    return run_id, hashlib.sha256(artifact.read_bytes()).hexdigest()


def read_run(connection: dict[str, str], run_id: str, tmp_path: Path) -> tuple[float, str]:
    """As the person of `connection`: the run's loss and its artifact's SHA-256."""
    tmp_path.mkdir(parents=True)
    with pytest.MonkeyPatch.context() as env:
        for key, value in connection.items():
            env.setenv(key, value)
        client = mlflow.MlflowClient(connection["MLFLOW_TRACKING_URI"])
        loss = client.get_run(run_id).data.metrics["loss"]
        local = client.download_artifacts(run_id, "weights.bin", str(tmp_path))
    return loss, hashlib.sha256(Path(local).read_bytes()).hexdigest()


def test_a_docker_backup_moves_to_the_cluster_and_back(tmp_path: Path):
    """Docker -> Kubernetes -> Docker: a run and its artifact, logged on the Docker target,
    restored into the release, then a backup of the release restored into Docker; each side
    keeps its own credentials, and its person reads the run with them."""
    docker_env = Env(name="e2e", namespace="", release="")
    make("destroy", ENV=docker_env.name, PURGE="1", YES="1")
    deployed = make("deploy", ENV=docker_env.name)
    assert deployed.returncode == 0, deployed.explain()
    backups = load_stack(docker_env.name).backup_dir
    try:
        docker_person = docker_env.connection()
        run_id, digest = log_run_with_artifact(docker_person, tmp_path / "logged")
        docker_backup = make("backup", ENV=docker_env.name)
        assert docker_backup.returncode == 0, docker_backup.explain()

        moved = make("restore", ENV=ENV.name, FROM=docker_backup.output.split()[-1], YES="1")
        assert moved.returncode == 0, moved.explain()
        ENV.timings["restore of a Docker backup"] = moved.seconds
        assert "the backup comes from target docker" in moved.output
        cluster_person = ENV.connection()
        assert (
            cluster_person["MLFLOW_TRACKING_PASSWORD"] != docker_person["MLFLOW_TRACKING_PASSWORD"]
        )
        assert read_run(cluster_person, run_id, tmp_path / "on-cluster") == (0.25, digest)
        assert tracking_status(docker_person, f"/api/2.0/mlflow/runs/get?run_id={run_id}") == 200
        assert tracking_status(
            {**docker_person, "MLFLOW_TRACKING_URI": cluster_person["MLFLOW_TRACKING_URI"]},
            f"/api/2.0/mlflow/runs/get?run_id={run_id}",
        ) == 401, "the Docker environment's password opens the cluster"  # fmt: skip

        cluster_backup = make("backup", ENV=ENV.name)
        assert cluster_backup.returncode == 0, cluster_backup.explain()
        back = make("restore", ENV=docker_env.name, FROM=cluster_backup.output.split()[-1], YES="1")
        assert back.returncode == 0, back.explain()
        assert "the backup comes from target kubernetes" in back.output
        assert docker_env.connection() == docker_person, "the Docker credentials changed"
        assert read_run(docker_person, run_id, tmp_path / "back") == (0.25, digest)
    finally:
        purged = make("destroy", ENV=docker_env.name, PURGE="1", YES="1")
        assert purged.returncode == 0, purged.explain()
        shutil.rmtree(backups, ignore_errors=True)  # type: ignore[arg-type]


def side_release(other: Env, mlflow_port: int, sftp_port: int) -> list[str]:
    """ansible-playbook arguments of a release beside the suite's own: its environment,
    namespace and release, the chart's defaults (no values file) and its own forwarded ports."""
    ports = {"mlflow": mlflow_port, "sftp": sftp_port}
    return [
        "-e", f"mlops_env={other.name}",
        "-e", f"mlops_kubernetes_namespace={other.namespace}",
        "-e", f"mlops_kubernetes_release={other.release}",
        "-e", '{"mlops_kubernetes_values_files": []}',
        "-e", json.dumps({"mlops_kubernetes_forward_ports": ports}),
    ]  # fmt: skip


def apply_manifest(manifest: dict) -> None:
    """kubectl apply of one object from stdin: secret data never goes through the arguments."""
    applied = subprocess.run(
        [str(find_tool("kubectl")), "--kubeconfig", str(KUBECONFIG), "apply", "-f", "-"],
        input=json.dumps(manifest), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert applied.returncode == 0, applied.stderr


def dvc_through_the_s3_remote(other: Env, keys: dict[str, tuple[str, str]], where: Path) -> None:
    """alice (dvc write) pushes with the stock dvc and her own S3 keys, as her connection.env
    says; bob (read) pulls the same bytes and cannot push: the policy MLflow set holds. Their
    SFTP keys, which reached the DVC area before, reach nothing now."""
    alice, bob = other.connection("alice"), other.connection("bob")
    assert alice["DVC_REMOTE_URL"] == "s3://cluster-data/dvc"
    for person in (alice, bob):
        # Loaded as what it is: paramiko, given a file, would try it as DSS too.
        key = paramiko.PKey.from_path(person["SFTP_PRIVATE_KEY"])
        with pytest.raises(paramiko.AuthenticationException):
            connect_sftp(person, key).close()
    pushed = init_project(where / "alice")
    credentials = write_s3_credentials(where / "alice-keys", *keys["alice"])
    use_s3_remote(pushed, credentials, alice["DVC_REMOTE_URL"], alice["DVC_S3_ENDPOINT_URL"])
    (pushed / "data.bin").write_bytes(os.urandom(64 * 1024))
    assert run_dvc("dvc", "add", "data.bin", cwd=pushed).returncode == 0
    result = run_dvc("dvc", "push", cwd=pushed)
    assert result.returncode == 0, result.stderr
    clone = clone_without_data(pushed, where / "bob", "data.bin")
    use_s3_remote(clone, write_s3_credentials(where / "bob-keys", *keys["bob"]))
    assert bob["DVC_REMOTE_URL"] == alice["DVC_REMOTE_URL"]
    result = run_dvc("dvc", "pull", cwd=clone)
    assert result.returncode == 0, result.stderr
    assert (clone / "data.bin").read_bytes() == (pushed / "data.bin").read_bytes()
    (clone / "forged.bin").write_bytes(b"forged")
    assert run_dvc("dvc", "add", "forged.bin", cwd=clone).returncode == 0
    assert run_dvc("dvc", "push", cwd=clone).returncode != 0, "a reader pushed"


def test_artifacts_on_an_s3_store_in_a_renamed_release(tmp_path: Path):
    """mlflow.artifacts.backend: s3 against a real Ceph RADOS Gateway outside the cluster (a
    Docker container on the host's bridge address, as a site's store elsewhere): a person's
    artifact lands in the bucket under the prefix and comes back through MLflow; the server's
    keys come from an existing Secret and show in no pod spec; the people's DVC remote is a
    bucket of its own on the same store (dvc.backend: s3), each person with their own S3 user.
    The release has a fullnameOverride: the role takes resource names from the release, never
    from the chart's naming rule (one release for all of it spares the suite deploys)."""
    other = Env(name="cluster-s3", namespace="mlops-s3", release="s3")
    sandbox = Sandbox("mlops-test-cluster-s3")
    settings = REPO_ROOT / "deploy" / ENV.name / "settings.yml"
    inventory = REPO_ROOT / "deploy" / ENV.name / "inventory.yml"
    extra = side_release(other, 15120, 12342)
    try:
        store = start_s3store(sandbox, tmp_path / "store", publish_address=bridge_gateway())
        access, secret = store.add_user("mlflow-server")
        bucket = store.client(access, secret)
        bucket.create_bucket(Bucket="cluster-artifacts")
        bucket.create_bucket(Bucket="cluster-data")
        people_keys = {name: store.add_user(name) for name in ("alice", "bob")}
        credentials = f"[default]\naws_access_key_id = {access}\naws_secret_access_key = {secret}\n"
        other.kubectl("create", "namespace", other.namespace, check=False)
        apply_manifest({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": "s3-keys", "namespace": other.namespace},
            "stringData": {"credentials": credentials},
        })  # fmt: skip
        values = {
            "fullnameOverride": "team-tracking",
            "mlflow": {
                "artifacts": {
                    "backend": "s3",
                    "s3": {"endpointUrl": store.url, "bucket": "cluster-artifacts",
                           "prefix": "team/mlflow", "existingSecret": "s3-keys"},
                }
            },
            "dvc": {"backend": "s3", "s3": {"bucket": "cluster-data"}},
        }  # fmt: skip
        result = ansible_playbook(
            "deploy.yml", inventory, settings, other.name, *extra,
            "-e", json.dumps({"mlops_kubernetes_values": values}),
        )  # fmt: skip
        assert result.returncode == 0, result.explain()
        ENV.timings["cold deploy with artifacts on S3"] = result.seconds
        assert secret not in result.output
        assert other.names("svc", "app.kubernetes.io/component=mlflow") == ["team-tracking-mlflow"]

        run_id, sha256 = log_run_with_artifact(other.connection(), tmp_path / "logged")
        keys = [o["Key"] for o in bucket.list_objects_v2(Bucket="cluster-artifacts")["Contents"]]
        (key,) = [k for k in keys if k.endswith(f"/{run_id}/artifacts/weights.bin")]
        assert key.startswith("team/mlflow/"), key
        body = bucket.get_object(Bucket="cluster-artifacts", Key=key)["Body"].read()
        assert hashlib.sha256(body).hexdigest() == sha256
        assert read_run(other.connection(), run_id, tmp_path / "read")[1] == sha256
        for pod in other.get("pods", "-l", "app.kubernetes.io/component=mlflow"):
            assert secret not in json.dumps(pod["spec"])
        dvc_through_the_s3_remote(other, people_keys, tmp_path / "dvc")
    finally:
        purged = ansible_playbook(
            "destroy.yml", inventory, settings, other.name, *extra, "-e", "mlops_purge=true"
        )
        sandbox.destroy()
    assert purged.returncode == 0, purged.explain()
    assert other.names("pvc") == []
    other.kubectl("delete", "namespace", other.namespace, "--wait=false", check=False)


def test_mlflow_speaks_https_to_everything_that_reaches_it(tmp_path: Path):
    """mlflow.tls.existingSecret: the probes (the deploy waits for them), `helm test` in the
    cluster and a person's stock client through the port-forward all reach MLflow over HTTPS and
    check its certificate; plaintext and a client without the CA get nothing."""
    other = Env(name="cluster-tls", namespace="mlops-tls", release="tls")
    settings = REPO_ROOT / "deploy" / ENV.name / "settings.yml"
    inventory = REPO_ROOT / "deploy" / ENV.name / "inventory.yml"
    port = 15130
    extra = side_release(other, port, 12352)
    service = f"{other.release}-mlops-kit-mlflow"
    ca = new_ca("cluster test CA")
    cert, key = ca.issue_server(
        tmp_path / "tls", service, f"{service}.{other.namespace}.svc",
        f"{service}.{other.namespace}.svc.cluster.local", "localhost",
    )  # fmt: skip
    ca_file = ca.write(tmp_path / "ca.crt")
    try:
        other.kubectl("create", "namespace", other.namespace, check=False)
        apply_manifest({
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": "mlflow-tls", "namespace": other.namespace},
            "stringData": {"tls.crt": cert.read_text(), "tls.key": key.read_text(),
                           "ca.crt": ca_file.read_text()},
        })  # fmt: skip
        values = {"mlflow": {"tls": {"existingSecret": "mlflow-tls"}}}
        result = ansible_playbook(
            "deploy.yml", inventory, settings, other.name, *extra,
            "-e", json.dumps({"mlops_kubernetes_values": values}),
        )  # fmt: skip
        assert result.returncode == 0, result.explain()
        ENV.timings["cold deploy with HTTPS on MLflow"] = result.seconds

        connection = other.connection()
        assert connection["MLFLOW_TRACKING_URI"] == f"https://localhost:{port}"
        assert (
            Path(connection["MLFLOW_TRACKING_SERVER_CERT_PATH"]).read_text() == ca_file.read_text()
        )
        run_id, sha256 = log_run_with_artifact(connection, tmp_path / "logged")
        assert read_run(connection, run_id, tmp_path / "read")[1] == sha256

        assert_https_only(connection["MLFLOW_TRACKING_URI"], port)

        tested = other.helm("test", other.release, "--timeout", "5m")
        assert tested.returncode == 0, tested.explain()
    finally:
        purged = ansible_playbook(
            "destroy.yml", inventory, settings, other.name, *extra, "-e", "mlops_purge=true"
        )
        other.kubectl("delete", "namespace", other.namespace, "--wait=false", check=False)
    assert purged.returncode == 0, purged.explain()


def test_purge_removes_everything():
    test_run = ENV.helm("test", ENV.release, "--timeout", "5m")
    assert test_run.returncode == 0, test_run.explain()
    backup_root = load_stack(ENV.name).backup_dir
    assert backup_root is not None
    backups = sorted(backup_root.iterdir())
    assert backups, "the backup tests left no backup to outlive the purge"
    purge()
    assert sorted(backup_root.iterdir()) == backups, "PURGE=1 touched the backups"
    shutil.rmtree(backup_root)  # this test's own backups
    assert ENV.names("pvc") == []
    assert ENV.names("secrets", "app.kubernetes.io/managed-by=Helm") == []
    assert ENV.names("pods") == [], "PURGE=1 left pods (the helm test pod?)"
    left = sorted(p.name for p in ENV.build_dir.iterdir()) if ENV.build_dir.exists() else []
    # build/cluster/ is also where `make cluster` writes its kubeconfigs: those stay.
    assert all(name.endswith("kubeconfig") for name in left), f"PURGE=1 left {left}"
