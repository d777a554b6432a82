"""The whole life of environment e2e, in order: cold deploy, smoke, idempotent redeploy, a
changed setting that restarts only its service, a host restart and a crash of each service
under load, an upgrade from the role's old PostgreSQL names, backup, a disaster and its restore,
a new clone refused until the secrets come back, upgrade, destroy that keeps the data,
redeploy, incremental backups with retention, purge with the backups kept, redeploy and
restore, purge. The tests share one stack, so they run in file order and each one stops the
rest when it fails (pytest -x in mk/deploy.mk)."""

from __future__ import annotations

import hashlib
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
from mlopskit.environments import parse_connection_env
from mlopskit.stack import load_stack
from mlopskit.versions import IMAGE_NAMES, image_set

from tests.e2e.crash_load import crash_each_service_under_load, restart_the_engine_under_load
from tests.e2e.e2e_support import (
    E2E_ENV,
    KEEP_DIR,
    REPO_ROOT,
    ansible_playbook,
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
from tests.support.hostile import OTHER_USERS, assert_unreadable, watched_command_lines

DEPLOY_DIR = REPO_ROOT / "deploy" / E2E_ENV
BUILD_DIR = REPO_ROOT / "build" / E2E_ENV
# The name prefix deploy/e2e/settings.yml sets; only the directory settings' defaults below
# use it. Container and volume names come from build/e2e/stack.json (the role writes them).
PREFIX = "mlops-e2e"
LABEL = f"io.mlops-kit.env={E2E_ENV}"
STATE_DIR = Path("/var/lib/mlops-kit") / PREFIX
# The person the smoke suite works as (the first editor with DVC write in deploy/e2e/people.yml).
SMOKE_PERSON = "alice"
PERSON_FILE = BUILD_DIR / "people" / SMOKE_PERSON / "connection.env"
# mlops_docker_backup_dir's default: outside everything PURGE=1 deletes.
BACKUP_DIR = Path("/var/backups/mlops-kit") / PREFIX


def deploy_with(*extra: str):
    return ansible_playbook(
        "deploy.yml", DEPLOY_DIR / "inventory.yml", DEPLOY_DIR / "settings.yml", E2E_ENV, *extra
    )


@pytest.fixture(scope="module", autouse=True)
def fresh_environment() -> Iterator[None]:
    """Start from nothing; purge at the end unless MLOPS_E2E_KEEP=1 asks to keep a failure.
    The backups outlive a purge by design: the test removes its own."""
    purge(E2E_ENV)
    shutil.rmtree(BACKUP_DIR, ignore_errors=True)
    yield
    if os.environ.get("MLOPS_E2E_KEEP") != "1":
        purge(E2E_ENV)
        shutil.rmtree(BACKUP_DIR, ignore_errors=True)


@pytest.fixture(scope="module")
def timings() -> Iterator[dict[str, float]]:
    yield from kept_timings("timings.json", "timings")


def verify_persistence() -> None:
    """Every run, model and DVC object the smoke suite recorded is still there, byte for byte."""
    result = check_persistence()
    assert result.returncode == 0, result.explain()
    assert "persistence ok" in result.output, result.explain()


def check_persistence():
    connection = parse_connection_env(PERSON_FILE.read_text())
    manifest = json.loads((BUILD_DIR / "smoke-manifest.json").read_text())
    assert manifest["runs"], "the smoke suite recorded no run"
    assert manifest["models"], "the smoke suite recorded no model"
    assert manifest["dvc_objects"], "the smoke suite recorded no DVC object"
    script = Path(__file__).with_name("check_persistence.py")
    return run(
        [sys.executable, str(script), str(BUILD_DIR / "smoke-manifest.json")],
        env={**connection, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1"},
    )


def test_cold_deploy(timings):
    with watched_command_lines() as command_lines:
        result = make("deploy", ENV=E2E_ENV)
    assert result.returncode == 0, result.explain()
    timings["cold deploy"] = result.seconds
    password = (BUILD_DIR / "secrets" / "mlflow_admin_password").read_text().strip()
    assert password not in result.output, "make deploy printed the admin password"
    # Another user of the host reads every command line: the deploy (Ansible's modules, the
    # Docker calls) passes the secrets it generates in files and pipes, never as arguments.
    assert any("ansible/deploy.yml" in line for line in command_lines), "the watcher saw no deploy"
    # ansible/ansible.cfg's Mitogen strategy runs the modules inside one Python per host; the
    # stock strategy starts an AnsiballZ_<module>.py per task (seen by the next test).
    assert not [line for line in command_lines if "AnsiballZ_" in line], "Mitogen is not in use"
    person_password = parse_connection_env(PERSON_FILE.read_text())["MLFLOW_TRACKING_PASSWORD"]
    secrets = [person_password, *(f.read_text().strip() for f in (BUILD_DIR / "secrets").iterdir())]
    for secret in (s for s in secrets if len(s) >= 16 and "\n" not in s):
        leaked = [line[:120] for line in command_lines if secret in line]
        assert leaked == [], f"a secret was on a command line: {leaked}"
    assert "MLFLOW_TRACKING_PASSWORD = ********" in result.output
    assert "MLflow UI at http://127.0.0.1:18500/" in result.output
    secret_files = [BUILD_DIR / "admin.env", PERSON_FILE, *(BUILD_DIR / "secrets").iterdir()]
    for path in secret_files:
        assert path.stat().st_mode & 0o777 == 0o600, f"{path} is not mode 0600"
    assert set(parse_connection_env(PERSON_FILE.read_text())) >= {
        "MLFLOW_TRACKING_URI",
        "DVC_REMOTE_URL",
        "SFTP_PRIVATE_KEY",
    }
    check_stack_file()


def check_stack_file() -> None:
    """build/e2e/stack.json names what runs, is world-readable and holds no secret."""
    path = BUILD_DIR / "stack.json"
    assert path.stat().st_mode & 0o777 == 0o644
    stack = load_stack(E2E_ENV)
    assert (stack.target, stack.environment, stack.name_prefix) == ("docker", E2E_ENV, PREFIX)
    assert (stack.state_dir, stack.backup_dir) == (STATE_DIR, BACKUP_DIR)
    assert set(containers().values()) <= set(docker_names("container", LABEL))
    assert docker_names("network", LABEL) == [stack.network]
    assert docker_names("volume", LABEL) == sorted(stack.volumes)
    mlflow = stack.service("mlflow")
    assert f"http://127.0.0.1:{mlflow.published_port}" in PERSON_FILE.read_text()
    assert stack.controller.secrets_dir == BUILD_DIR / "secrets"
    text = path.read_text()
    for secret in (BUILD_DIR / "secrets").iterdir():
        value = secret.read_text().strip()
        assert value not in text, f"stack.json holds the content of {secret.name}"


# Another user of the Docker host, and another container's UID in group 0 (as OpenShift and
# this kit run them): neither may read the containers' secret copies.
@pytest.mark.parametrize("uid_gid", OTHER_USERS)
def test_no_other_user_of_the_host_reads_the_containers_secrets(uid_gid):
    files = sorted(p for p in STATE_DIR.glob("*/*") if p.is_file())
    assert any(p.name == "superuser_password" for p in files), files
    assert_unreadable(files, uid_gid)


def test_smoke(timings):
    result = make("smoke", ENV=E2E_ENV)
    timings["smoke"] = result.seconds
    assert result.returncode == 0, result.explain()
    screenshot = BUILD_DIR / "ui-experiment.png"
    assert screenshot.is_file()
    # build/e2e/ goes with the final purge; keep the screenshot where CI can archive it.
    KEEP_DIR.mkdir(parents=True, exist_ok=True)
    shutil.copy(screenshot, KEEP_DIR / "ui-experiment.png")


def image_ids() -> dict[str, str]:
    images = image_set()
    refs = [images.ref(name) for name in IMAGE_NAMES]
    return {info["RepoTags"][0]: info["Id"] for info in docker_json("image", "inspect", *refs)}


def converged_images() -> bool:
    """True when every container runs the image its tag names now."""
    current = set(image_ids().values())
    return all(
        docker_json("inspect", container)[0]["Image"] in current
        for container in containers().values()
    )


def test_second_deploy_changes_and_restarts_nothing(timings):
    if not converged_images():
        # Someone rebuilt an image since the cold deploy (`make images` on a shared machine):
        # that is a change. Converge first, so that the next deploy has nothing to do.
        print("[e2e] images were rebuilt since the cold deploy; converging first")
        assert make("deploy", ENV=E2E_ENV).returncode == 0
    before = container_states()
    images_before = image_ids()
    secrets_before = {p.name: p.read_bytes() for p in (BUILD_DIR / "secrets").iterdir()}
    result = make("deploy", ENV=E2E_ENV)
    assert result.returncode == 0, result.explain()
    assert image_ids() == images_before, "images were rebuilt during the check; rerun it"
    timings["warm deploy"] = result.seconds
    assert recap_changed(result.output) == {"localhost": 0}, result.explain()
    assert container_states() == before, "a container was restarted or re-created"
    secrets_after = {p.name: p.read_bytes() for p in (BUILD_DIR / "secrets").iterdir()}
    assert secrets_after == secrets_before, "a later deploy must reuse the secrets"


def test_the_roles_converge_the_same_under_ansibles_stock_strategy(monkeypatch):
    """The roles do not depend on Mitogen: from playbooks without this ansible.cfg (its linear
    strategy) a deploy of the converged stack changes and restarts nothing either."""
    monkeypatch.setenv("ANSIBLE_STRATEGY", "linear")
    before = container_states()
    with watched_command_lines() as command_lines:
        result = make("deploy", ENV=E2E_ENV)
    assert result.returncode == 0, result.explain()
    assert [line for line in command_lines if "AnsiballZ_" in line], "not the stock strategy"
    assert recap_changed(result.output) == {"localhost": 0}, result.explain()
    assert container_states() == before, "a container was restarted or re-created"


def test_changed_setting_restarts_only_what_it_affects():
    before = container_states()
    result = deploy_with("-e", "mlops_docker_sftp_log_level=VERBOSE")
    assert result.returncode == 0, result.explain()
    after = container_states()
    assert after["sftp"] != before["sftp"], "the changed SFTP setting did not reach SFTP"
    assert after["postgresql"] == before["postgresql"]
    assert after["mlflow"] == before["mlflow"]
    # And back: the settings file is the truth again.
    result = deploy_with()
    assert result.returncode == 0, result.explain()
    final = container_states()
    assert final["sftp"] != after["sftp"]
    assert (final["postgresql"], final["mlflow"]) == (before["postgresql"], before["mlflow"])


def test_a_host_restart_under_load_brings_everything_back_by_itself(timings, monkeypatch):
    """A reboot, as the Docker engine sees one (restarted: every container stopped as at
    shutdown, then started again by its restart policy), while a person's client keeps
    logging: nobody runs a command, the same containers serve writes again, and every
    acknowledged write and all of the smoke suite's data are there."""
    client = person_client(monkeypatch)
    before = container_states()
    started = time.monotonic()
    writes = restart_the_engine_under_load(E2E_ENV, client)
    timings["engine restart under load, to healthy (s)"] = time.monotonic() - started
    after = container_states()
    assert {s: v[0] for s, v in after.items()} == {s: v[0] for s, v in before.items()}, (
        "a container was re-created, not restarted"
    )
    assert all(after[s][1] != before[s][1] for s in after), f"not all restarted: {after}"
    assert writes.failures > 0, "no write failed: the restart did not happen under load"
    lost = writes.lost()
    assert not lost, f"acknowledged writes lost: {lost[:10]} ({len(lost)} in all)"
    verify_persistence()


def person_client(monkeypatch):
    """A person's stock MLflow client that fails fast (the load helpers count failures)."""
    connection = parse_connection_env(PERSON_FILE.read_text())
    for key, value in {**connection, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
                       "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    import mlflow

    return mlflow.MlflowClient(tracking_uri=connection["MLFLOW_TRACKING_URI"])


def test_a_crash_of_each_service_under_load_loses_no_acknowledged_write(timings, monkeypatch):
    """kill -9 of each service's main process in turn (what an OOM kill or a crash does;
    `docker kill` would count as a manual stop) while a person's client keeps logging metrics
    and artifacts: Docker restarts the service, the stack serves writes again by itself, and
    every write the server acknowledged is there afterwards, as is the smoke suite's data."""
    client = person_client(monkeypatch)
    started = time.monotonic()
    writes = crash_each_service_under_load(E2E_ENV, client)
    timings["three crashes under load, to healthy (s)"] = time.monotonic() - started
    assert writes.failures > 0, "no write failed: the crashes did not happen under load"
    assert len(writes.artifacts) >= 3
    lost = writes.lost()
    assert not lost, f"acknowledged writes lost: {lost[:10]} ({len(lost)} in all)"
    verify_persistence()


def as_left_by_the_old_names(config_dir: Path) -> dict[str, bytes]:
    """Turn the running stack into what the role made before the service was called
    postgresql (issue 11): the PostgreSQL container, its secret copies on the host and the
    controller's secret files under their old names, and a settings file using an old name.
    Returns the secrets by their new names."""
    stack = load_stack(E2E_ENV)
    renamed = run(["docker", "rename", stack.container("postgresql"), f"{PREFIX}-postgres"])
    assert renamed.returncode == 0, renamed.explain()
    (STATE_DIR / "postgresql").rename(STATE_DIR / "postgres")
    secrets = {}
    for name in ("postgresql_superuser_password", "postgresql_app_password"):
        path = BUILD_DIR / "secrets" / name
        secrets[name] = path.read_bytes()
        path.rename(path.with_name(name.replace("postgresql_", "postgres_", 1)))
    for name in ("inventory.yml", "people.yml"):
        shutil.copy(DEPLOY_DIR / name, config_dir / name)
    settings = (DEPLOY_DIR / "settings.yml").read_text()
    (config_dir / "settings.yml").write_text(f"{settings}\nmlops_docker_postgres_memory: 768m\n")
    return secrets


def test_upgrade_from_the_old_postgres_names_keeps_everything(tmp_path):
    secrets = as_left_by_the_old_names(tmp_path)
    result = ansible_playbook(
        "deploy.yml", tmp_path / "inventory.yml", tmp_path / "settings.yml", E2E_ENV
    )
    assert result.returncode == 0, result.explain()
    output = " ".join(result.output.split())
    assert "mlops_docker_postgres_memory is now called mlops_docker_postgresql_memory" in output
    names = docker_names("container", LABEL)
    assert f"{PREFIX}-postgres" not in names, "two PostgreSQL servers on one volume"
    (server,) = docker_json("inspect", containers()["postgresql"])
    assert server["HostConfig"]["Memory"] == 768 * 2**20, "the setting's old name was ignored"
    for name, content in secrets.items():
        assert (BUILD_DIR / "secrets" / name).read_bytes() == content, f"{name} changed"
        assert not (BUILD_DIR / "secrets" / name.replace("postgresql_", "postgres_", 1)).exists()
    assert not (STATE_DIR / "postgres").exists()
    verify_persistence()
    assert make("deploy", ENV=E2E_ENV).returncode == 0


def lose_the_data() -> None:
    """A disaster: the tracking database's tables and every file on SFTP are gone, and a table
    that only a newer migration would have made has appeared."""
    psql("DROP SCHEMA public CASCADE; CREATE SCHEMA public AUTHORIZATION mlflow;")
    psql("CREATE TABLE public.from_a_newer_migration (id int)")
    wipe = "rm -rf /data/artifacts/* /data/dvc/*"
    subprocess.run(
        ["docker", "exec", containers()["sftp"], "sh", "-c", wipe],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip


def backup_names() -> list[str]:
    return sorted(p.name for p in BACKUP_DIR.iterdir())


def test_restore_wants_a_confirmation(timings):
    backup = make("backup", ENV=E2E_ENV)
    assert backup.returncode == 0, backup.explain()
    timings["backup (first, full)"] = backup.seconds
    assert "MLflow was paused for" in backup.output, backup.explain()
    refused = make("restore", ENV=E2E_ENV)
    assert refused.returncode != 0
    assert "YES=1" in refused.output, refused.explain()
    assert backup_names() == [Path(backup.output.strip().splitlines()[-1]).name], (
        "a refused restore must not even take its safety backup"
    )


def test_restore_brings_back_everything_after_a_disaster(timings):
    lose_the_data()
    assert "persistence ok" not in check_persistence().output, "the data loss must be real"
    record = STATE_DIR / "migrated-by-image"
    recorded = record.stat().st_mtime_ns
    result = make("restore", ENV=E2E_ENV, YES="1")
    assert result.returncode == 0, result.explain()
    timings["restore (with its safety backup and deploy)"] = result.seconds
    verify_persistence()
    tables = psql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").split()
    assert "from_a_newer_migration" not in tables, "restore must re-create the database"
    assert record.stat().st_mtime_ns > recorded, "the deploy after the restore did not migrate"
    backups = backup_names()
    assert len(backups) == 2
    assert backups[1].endswith("-before-restore")
    assert BACKUP_DIR.stat().st_mode & 0o777 == 0o700


def test_a_new_clone_is_refused_until_the_secrets_come_back_from_a_backup(timings):
    """A new clone (or a lost work tree) deploying onto a host with the stack's data: new
    passwords would lock the stack out of its database and change everyone's credentials.
    The deploy stops before any change; the copy its message names brings the secrets back
    and leaves the data as it is."""
    names = containers()
    before = container_states(names=names)
    aside = BUILD_DIR.with_name(BUILD_DIR.name + ".aside")
    shutil.rmtree(aside, ignore_errors=True)
    BUILD_DIR.rename(aside)
    try:
        refused = make("deploy", ENV=E2E_ENV)
        generated = sorted(p.name for p in BUILD_DIR.rglob("*") if p.is_file())
        assert refused.returncode != 0, refused.explain()
        assert f"volume {PREFIX}-pgdata" in refused.output, refused.explain()
        assert generated == [], f"the refused deploy generated {generated}"
        assert container_states(names=names) == before, "the refused deploy touched a container"
        # The command as the message gives it (folded over lines in Ansible's output).
        message = " ".join(line.strip() for line in refused.output.splitlines())
        command = re.search(r"`(mkdir -p build/\S+ && cp -a [^`]+)`", message)
        assert command, refused.explain()
        copied = run(["sh", "-c", command.group(1)])
        assert copied.returncode == 0, copied.explain()

        result = make("deploy", ENV=E2E_ENV)
        assert result.returncode == 0, result.explain()
        timings["deploy with the secrets of a backup"] = result.seconds
        for name in ("secrets", "people"):
            assert tree_digest(BUILD_DIR / name) == tree_digest(aside / name), (
                f"build/{E2E_ENV}/{name} differs from the one the stack was deployed with"
            )
        assert container_states() == before, "the same secrets must not re-create a container"
        # The test's own record of what the smoke suite wrote is not a deploy's to bring back.
        shutil.copy(aside / "smoke-manifest.json", BUILD_DIR / "smoke-manifest.json")
        verify_persistence()
    except BaseException:
        shutil.rmtree(BUILD_DIR, ignore_errors=True)
        aside.rename(BUILD_DIR)
        raise
    shutil.rmtree(aside)


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_upgrade_backs_up_first_and_keeps_everything(timings):
    result = make("upgrade", ENV=E2E_ENV)
    assert result.returncode == 0, result.explain()
    timings["upgrade (same versions)"] = result.seconds
    assert any(name.endswith("-before-upgrade") for name in backup_names())
    verify_persistence()


def test_destroy_keeps_volumes_and_secrets():
    result = make("destroy", ENV=E2E_ENV)
    assert result.returncode == 0, result.explain()
    assert docker_names("container", LABEL) == []
    assert docker_names("network", LABEL) == []
    # stack.json outlives a destroy: it still names the volumes and the state kept.
    assert docker_names("volume", LABEL) == sorted(load_stack(E2E_ENV).volumes)
    assert PERSON_FILE.is_file()
    assert STATE_DIR.is_dir()


def test_purge_asks_for_confirmation():
    # No terminal and no YES=1: nobody can confirm, so nothing is removed.
    result = make("destroy", ENV=E2E_ENV, PURGE="1")
    assert result.returncode != 0
    assert "YES=1" in result.output, result.explain()
    said = " ".join(result.output.split())
    volumes = sorted(load_stack(E2E_ENV).volumes)
    for item in (*(f"Docker volume {volume}" for volume in volumes),
                 f"{STATE_DIR}/", f"{BUILD_DIR}/", f"It keeps {len(backup_names())} backup(s) "
                 f"in {BACKUP_DIR}/"):  # fmt: skip
        assert item in said, result.explain()
    assert docker_names("volume", LABEL) == volumes
    assert (BUILD_DIR / "secrets").is_dir()


def test_redeploy_after_destroy_finds_all_data(timings):
    kept = [PERSON_FILE, PERSON_FILE.with_name("id_rsa"), PERSON_FILE.with_name("known_hosts")]
    digests_before = [hashlib.sha256(path.read_bytes()).hexdigest() for path in kept]
    result = make("deploy", ENV=E2E_ENV)
    assert result.returncode == 0, result.explain()
    timings["deploy after destroy"] = result.seconds
    digests_after = [hashlib.sha256(path.read_bytes()).hexdigest() for path in kept]
    # The same password, key and SFTP host keys: clients' known_hosts stays valid.
    assert digests_after == digests_before, "the secrets must survive make destroy"
    verify_persistence()


def stored_files(backup: Path) -> dict[str, os.stat_result]:
    return {str(p.relative_to(backup)): p.stat() for p in (backup / "sftp").rglob("*")
            if p.is_file()}  # fmt: skip


def test_backups_are_incremental_and_rotated(timings):
    result = make("backup", ENV=E2E_ENV, KEEP="2")
    assert result.returncode == 0, result.explain()
    timings["backup (incremental)"] = result.seconds
    assert "(0 bytes of SFTP data copied" in result.output, result.explain()
    newest, previous = (BACKUP_DIR / name for name in backup_names()[::-1][:2])
    assert len(backup_names()) == 2, "KEEP=2 keeps the two newest"
    files, before = stored_files(newest), stored_files(previous)
    assert files, "the backup holds no SFTP file"
    assert all(files[name].st_ino == before[name].st_ino for name in files), "not hard-linked"
    assert all(stat.st_mode & 0o777 == 0o600 for stat in files.values())


def test_backups_survive_a_purge_and_restore_everything(timings, tmp_path):
    """Disaster recovery (docs/operations.md): everything but the backups is gone; deploy and
    restore from a copy made elsewhere with `cp -a`."""
    # The smoke manifest lives in build/e2e/, which the purge deletes: keep it aside.
    manifest = tmp_path / "smoke-manifest.json"
    shutil.copy(BUILD_DIR / "smoke-manifest.json", manifest)
    kept = backup_names()
    offsite = tmp_path / "offsite"
    offsite.mkdir()
    copied = run(["cp", "-a", str(BACKUP_DIR), f"{offsite}/"])
    assert copied.returncode == 0, copied.explain()
    purge(E2E_ENV)
    assert backup_names() == kept, "PURGE=1 touched the backups"
    assert not BUILD_DIR.exists()
    result = make("deploy", ENV=E2E_ENV)
    assert result.returncode == 0, result.explain()
    shutil.copy(manifest, BUILD_DIR / "smoke-manifest.json")
    assert "persistence ok" not in check_persistence().output, "the purge must lose the data"
    result = make("restore", ENV=E2E_ENV, FROM=str(offsite / BACKUP_DIR.name / kept[-1]), YES="1")
    assert result.returncode == 0, result.explain()
    timings["restore after purge + redeploy"] = result.seconds
    # The restore brought back the secrets and the people's credentials: the old
    # connection.env works again.
    shutil.copy(manifest, BUILD_DIR / "smoke-manifest.json")
    verify_persistence()


def test_a_new_database_volume_is_filled_by_a_restore(timings):
    """The PostgreSQL major upgrade of docs/operations.md, rehearsed within one major."""
    volumes = load_stack(E2E_ENV).service("postgresql").volumes
    for step in (make("backup", ENV=E2E_ENV), make("destroy", ENV=E2E_ENV),
                 run(["docker", "volume", "rm", *volumes]),
                 make("deploy", ENV=E2E_ENV)):  # fmt: skip
        assert step.returncode == 0, step.explain()
    assert "persistence ok" not in check_persistence().output, "the database must be new"
    result = make("restore", ENV=E2E_ENV, YES="1")
    assert result.returncode == 0, result.explain()
    timings["restore into a new database volume"] = result.seconds
    verify_persistence()


def test_purge_removes_everything():
    kept = backup_names()
    purge(E2E_ENV)
    for kind in ("container", "network", "volume"):
        assert docker_names(kind, LABEL) == [], f"a {kind} survived PURGE=1"
    assert not BUILD_DIR.exists()
    assert not STATE_DIR.exists()
    assert backup_names() == kept, "PURGE=1 must leave the backups alone"
