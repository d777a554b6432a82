"""The rendered pods fill the images' contract (images/contract.yaml) and nothing else."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from chartlib import (
    REPO_ROOT,
    Rendered,
    containers,
    env_map,
    env_names,
    helm_template,
    migrate_container,
    migration_job,
    pod_specs,
)
from contract import ImageContract, parse_contract
from mlopskit.versions import IMAGE_NAMES, image_set

from tests.support.docker_role import render_docker_role

CONTRACT = parse_contract()
CHART_YAML = yaml.safe_load((REPO_ROOT / "charts" / "mlops-kit" / "Chart.yaml").read_text())
CHART_VALUES = yaml.safe_load((REPO_ROOT / "charts" / "mlops-kit" / "values.yaml").read_text())
# Main containers (and the migration step) by the image they run.
COMPONENT_CONTAINERS = {
    "mlflow": "mlflow",
    "migrate": "mlflow",
    "wait-schema": "mlflow",
    "postgresql": "postgresql",
    "sftp": "sftp",
}


def component_containers(rendered: Rendered) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(component, container, pod spec) for the containers that run an image's entrypoint."""
    found = []
    for _, spec in pod_specs(rendered):
        for container in containers(spec):
            component = COMPONENT_CONTAINERS.get(container["name"])
            if component:
                found.append((component, container, spec))
    return found


def test_the_contract_parses() -> None:
    """Guards the reader: a reshaped contract fails here instead of passing vacuously."""
    assert CONTRACT["mlflow"].variables["MLFLOW_DB_PASSWORD"] is True
    assert CONTRACT["mlflow"].variables["MLFLOW_DB_HOST"] is False
    assert CONTRACT["postgresql"].variables["POSTGRESQL_APP_PASSWORD"] is True
    assert "SFTP_ACCESS" in CONTRACT["sftp"].variables
    assert "SFTP_AUTHORIZED_KEYS" not in CONTRACT["sftp"].variables
    assert CONTRACT["mlflow"].variables["MLFLOW_METRICS_PASSWORD"] is True
    assert "MLFLOW_PEOPLE_DIR" in CONTRACT["mlflow"].variables
    assert (CONTRACT["postgresql"].port, CONTRACT["postgresql"].volume) == (
        5432,
        "/var/lib/postgresql/data",
    )
    assert (CONTRACT["sftp"].port, CONTRACT["sftp"].volume) == (2222, "/data")
    assert CONTRACT["mlflow"].port == 5000
    assert all(len(c.variables) >= 6 for c in CONTRACT.values())


def test_env_names_are_in_the_contract(case: Rendered) -> None:
    for component, container, _ in component_containers(case):
        unknown = env_names(container) - CONTRACT[component].allowed_env()
        assert not unknown, (
            f"{container['name']} sets {unknown}, which images/contract.yaml does not know"
        )


def test_secrets_only_travel_as_files(case: Rendered) -> None:
    for component, container, _ in component_containers(case):
        secrets = {n for n, secret in CONTRACT[component].variables.items() if secret}
        direct = env_names(container) & secrets
        assert not direct, f"{container['name']} passes {direct} by value; use NAME_FILE"
        for item in container.get("env") or []:
            assert "valueFrom" not in item, (
                f"{item['name']} comes from a Secret into the environment"
            )


def test_file_settings_point_into_mounts(case: Rendered) -> None:
    for _, container, spec in component_containers(case):
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        for name, value in env_map(container).items():
            if not name.endswith(("_FILE", "_DIR", "_KEYS", "_ACCESS")):
                continue
            mount = next((p for p in mounts if value == p or value.startswith(p + "/")), None)
            assert mount, f"{container['name']}: {name}={value} is not under any mount"
            volume = volumes[mounts[mount]]
            items = (volume.get("secret") or volume.get("configMap") or {}).get("items")
            if items and value != mount:
                assert value[len(mount) + 1 :] in {i["path"] for i in items}, f"{name}={value}"


def test_required_settings_are_set(case: Rendered) -> None:
    for component, container, _ in component_containers(case):
        env = env_map(container)
        if component == "postgresql":
            assert {"POSTGRESQL_PASSWORD_FILE", "POSTGRESQL_APP_PASSWORD_FILE"} <= set(env)
        elif component == "mlflow":
            assert env["MLFLOW_DB_HOST"]
            assert "MLFLOW_DB_PASSWORD_FILE" in env
            if env["MLFLOW_AUTH_ENABLED"] == "true":
                assert env["MLFLOW_AUTH_DB_NAME"] != env["MLFLOW_DB_NAME"]
            if container["name"] in ("migrate", "wait-schema"):
                continue  # the databases' settings only (test_migration_runs_once_...)
            if env["MLFLOW_AUTH_ENABLED"] == "true":
                assert {
                    "MLFLOW_AUTH_ADMIN_PASSWORD_FILE",
                    "MLFLOW_FLASK_SERVER_SECRET_KEY_FILE",
                } <= set(env)
            key = (
                "MLFLOW_ARTIFACTS_DESTINATION"
                if env["MLFLOW_SERVE_ARTIFACTS"] == "true"
                else "MLFLOW_DEFAULT_ARTIFACT_ROOT"
            )
            assert env[key].startswith(("sftp://", "s3://"))
            assert {"MLFLOW_SFTP_PRIVATE_KEY_FILE", "MLFLOW_SFTP_KNOWN_HOSTS_FILE"} <= set(env)


def test_commands_ports_volumes_and_tmp(case: Rendered) -> None:
    for component, container, spec in component_containers(case):
        contract: ImageContract = CONTRACT[component]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]], (
            f"{container['name']}: /tmp must be an emptyDir"
        )
        assert "command" not in container, "the image's entrypoint must run"
        if container["name"] in {"migrate", "wait-schema"}:
            assert container["args"] == [container["name"]]
            continue
        assert [p["containerPort"] for p in container["ports"]] == [contract.port]
        if component == "mlflow":
            assert container["args"] == ["server"]
        if contract.volume:
            claim_templates = {
                t["metadata"]["name"]
                for s in case.of_kind("StatefulSet")
                for t in s["spec"].get("volumeClaimTemplates", [])
            }
            name = mounts[contract.volume]
            assert name in claim_templates or "persistentVolumeClaim" in volumes[name], container[
                "name"
            ]


# What the `migrate` command reads (images/mlflow/entrypoint.py, load_settings(server=False)).
MIGRATION_SETTINGS = re.compile(r"MLFLOW_DB_[A-Z_]+|MLFLOW_AUTH_ENABLED|MLFLOW_AUTH_DB_NAME")
MIGRATION_VOLUMES = {"tmp", "db-password", "db-ca"}


def test_migration_runs_once_with_the_server_settings_before_it(case: Rendered) -> None:
    """One Job migrates with the server's image and database settings; the server waits for
    it in its last init container and never migrates itself. Both steps get the databases'
    settings and password alone: none of the server's other secrets."""
    mlflow = case.get("Deployment", "-mlflow")["spec"]["template"]["spec"]
    init = {c["name"]: c for c in mlflow["initContainers"]}
    server = mlflow["containers"][0]
    assert list(init)[-1] == "wait-schema", "the schema gate runs last, right before the server"
    assert "migrate" not in init, "no server pod migrates"
    wait, migrate = init["wait-schema"], migrate_container(case)
    assert wait["image"] == migrate["image"] == server["image"]
    server_env = {item["name"]: item for item in server["env"]}
    for step in (migrate, wait):
        for item in step["env"]:
            assert MIGRATION_SETTINGS.fullmatch(item["name"]), f"{step['name']}: no {item['name']}"
            if item["name"] != "MLFLOW_DB_UPGRADE":
                assert item == server_env[item["name"]], "the server's database settings"
        assert {"MLFLOW_DB_HOST", "MLFLOW_DB_PASSWORD_FILE"} <= {i["name"] for i in step["env"]}
        assert {m["name"] for m in step["volumeMounts"]} <= MIGRATION_VOLUMES, step["name"]
    server_mounts = {m["name"]: m for m in server["volumeMounts"]}
    assert all(m == server_mounts[m["name"]] for m in wait["volumeMounts"])
    # The checks can fail: the server itself has more (its admin password or SFTP key).
    assert {m["name"] for m in server["volumeMounts"]} - MIGRATION_VOLUMES
    assert env_map(server)["MLFLOW_DB_UPGRADE"] == "false", "the server must not migrate on its own"
    job = migration_job(case)
    job_spec = job["spec"]["template"]["spec"]
    # The Job holds the database password and nothing else: no admin password, Flask key,
    # people's passwords or SFTP key.
    assert {v["name"] for v in job_spec["volumes"]} <= MIGRATION_VOLUMES
    assert {m["name"] for m in migrate["volumeMounts"]} <= MIGRATION_VOLUMES
    assert "initContainers" not in job_spec
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert "helm.sh/hook" not in job["metadata"].get("annotations", {}), "a release object"


def test_the_migration_job_is_named_after_its_spec(helm: Path) -> None:
    """A new image makes a new Job (a Job's pod template cannot change); the same values make
    the same name, so an unchanged release keeps the Job that ran."""
    base = {"postgresql": {"auth": {"existingSecret": "pg"}}}
    first = migration_job(helm_template(helm, base))["metadata"]["name"]
    again = migration_job(helm_template(helm, base))["metadata"]["name"]
    newer = migration_job(helm_template(helm, {**base, "mlflow": {"image": {"tag": "9.9.9"}}}))
    assert first == again
    assert newer["metadata"]["name"] != first
    assert first.startswith("smoke-mlops-kit-migrate-")
    # The longest full name the chart allows still makes a valid Job name (a label value too).
    longest = migration_job(helm_template(helm, {**base, "fullnameOverride": "f" * 40}))
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", longest["metadata"]["name"])


def test_endpoints_match_the_services(case: Rendered) -> None:
    env = env_map(case.get("Deployment", "-mlflow")["spec"]["template"]["spec"]["containers"][0])
    artifacts = env.get("MLFLOW_ARTIFACTS_DESTINATION") or env["MLFLOW_DEFAULT_ARTIFACT_ROOT"]
    # An s3:// destination names no Service (test_chart_s3.py checks its parts).
    match = re.fullmatch(
        r"sftp://(?P<user>[^@]+)@(?P<host>[^:]+):(?P<port>\d+)(?P<path>/.*)", artifacts
    )
    assert match or artifacts.startswith("s3://"), artifacts
    if case.names("StatefulSet"):
        service = case.get("Service", "-postgresql")
        assert env["MLFLOW_DB_HOST"] == service["metadata"]["name"]
        assert env["MLFLOW_DB_PORT"] == str(service["spec"]["ports"][0]["port"])
        pg_env = env_map(
            case.get("StatefulSet", "-postgresql")["spec"]["template"]["spec"]["containers"][0]
        )
        assert pg_env["POSTGRESQL_APP_USER"] == env["MLFLOW_DB_USER"]
        assert pg_env["POSTGRESQL_APP_DB"] == env["MLFLOW_DB_NAME"]
        assert pg_env["POSTGRESQL_AUTH_DB"] == env.get("MLFLOW_AUTH_DB_NAME", "")
    if match and any(n.endswith("-sftp") for n in case.names("Deployment")):
        service = case.get("Service", "-sftp")
        sftp_spec = case.get("Deployment", "-sftp")["spec"]["template"]["spec"]
        sftp_env = env_map(sftp_spec["containers"][0])
        assert match["host"] == service["metadata"]["name"]
        assert match["port"] == str(service["spec"]["ports"][0]["port"])
        assert match["user"] == sftp_env["SFTP_USERNAME"]
        assert match["path"] == f"{sftp_env['SFTP_DATA_ROOT']}/artifacts"
        assert "artifacts" in sftp_env["SFTP_DIRECTORIES"].split()
        known_hosts = {
            c["name"]: c
            for c in case.get("Deployment", "-mlflow")["spec"]["template"]["spec"]["initContainers"]
        }["known-hosts"]
        assert match["host"] in known_hosts["args"][3].split(",")
        assert known_hosts["args"][4] == match["port"]


def test_default_images_follow_versions_env() -> None:
    images = image_set(prefix="", mlflow_version="", postgresql_major="")  # versions.env, always
    for name in IMAGE_NAMES:
        image = CHART_VALUES[name]["image"]
        assert f"{image['repository']}:{image['tag']}" == images.ref(name), name
    assert CHART_YAML["appVersion"] == images.mlflow_version


def test_allowed_hosts_cover_the_service_and_the_exposed_hosts(
    matrix_renders: dict[str, Rendered],
) -> None:
    for case_name, host in (
        ("openshift", "mlflow.apps.example.com"),
        ("direct-artifacts", "mlflow.example.com"),
    ):
        rendered = matrix_renders[case_name]
        env = env_map(
            rendered.get("Deployment", "-mlflow")["spec"]["template"]["spec"]["containers"][0]
        )
        allowed = env["MLFLOW_ALLOWED_HOSTS"].split(",")
        service = rendered.get("Service", "-mlflow")["metadata"]["name"]
        assert host in allowed
        assert {
            service,
            f"{service}.mlops-test.svc",
            f"{service}.mlops-test.svc.cluster.local",
        } <= set(allowed)


def mlflow_accepts(rendered: Rendered) -> Any:
    """MLflow's own Host check (the version the image runs), fed what the entrypoint makes of
    the rendered MLFLOW_ALLOWED_HOSTS."""
    from mlflow.server.security_utils import is_allowed_host_header

    spec = importlib.util.spec_from_file_location(
        "mlflow_entrypoint", REPO_ROOT / "images" / "mlflow" / "entrypoint.py"
    )
    assert spec is not None
    assert spec.loader is not None
    entrypoint = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = entrypoint
    spec.loader.exec_module(entrypoint)
    container = rendered.get("Deployment", "-mlflow")["spec"]["template"]["spec"]["containers"][0]
    allowed = entrypoint.expand_allowed_hosts(env_map(container)["MLFLOW_ALLOWED_HOSTS"]).split(",")
    return lambda host: is_allowed_host_header(allowed, host)


PRIVATE_HOSTS = [
    "10.1.2.3:5000", "172.31.0.9:5000", "192.168.1.1", "100.64.0.5:5000", "100.127.255.1:5000",
    "[fd12:3456::1]:5000", "[fc00::1]:5000", "[fd00::2]",
]  # fmt: skip
FOREIGN_HOSTS = [
    "8.8.8.8:5000", "100.63.255.1:5000", "100.128.0.1:5000", "172.32.0.1:5000",
    "[2001:db8::1]:5000", "evil.example.com", "evil.example.com:5000",
    # DNS names that start like a private address (MLflow's own "10.*" lets them through).
    "10.1.2.3.evil.example", "10.evil.example:5000", "100.64.evil.example", "172.16.x.example:80",
]  # fmt: skip


def test_mlflow_accepts_private_addresses_and_its_names_only(
    matrix_renders: dict[str, Rendered],
) -> None:
    """Pods in 100.64.0.0/10 and IPv6 ULAs used to get 403; foreign names must still."""
    accepts = mlflow_accepts(matrix_renders["defaults"])
    service = matrix_renders["defaults"].get("Service", "-mlflow")["metadata"]["name"]
    for host in [*PRIVATE_HOSTS, service, f"{service}:5000", "localhost:5000"]:
        assert accepts(host), host
    for host in FOREIGN_HOSTS:
        assert not accepts(host), host


def test_private_addresses_can_be_refused(helm: Path) -> None:
    accepts = mlflow_accepts(helm_template(helm, {"mlflow": {"allowPrivateIPHosts": False}}))
    for host in PRIVATE_HOSTS:
        assert not accepts(host), host


# ---------- drift against the Docker target ----------

DOCKER_ROLE = REPO_ROOT / "ansible" / "roles" / "mlops_docker"


def docker_service_env() -> dict[str, dict[str, str]]:
    """The env mappings (unrendered) of the Docker role's PostgreSQL and SFTP containers."""
    found: dict[str, dict[str, str]] = {}
    for task in yaml.safe_load((DOCKER_ROLE / "tasks" / "containers.yml").read_text()):
        service = (task.get("vars") or {}).get("mlops_docker_service") or {}
        if service.get("key") in ("postgresql", "sftp") and isinstance(service.get("env"), dict):
            found[service["key"]] = service["env"]
    return found


def docker_target_env() -> dict[str, set[str]]:
    """Env names the Docker target's role sets, per image (read from its YAML, not run)."""
    role_vars = yaml.safe_load((DOCKER_ROLE / "vars" / "main.yml").read_text())
    mlflow = set(role_vars["mlops_docker_mlflow_env_base"])
    for mode in role_vars["mlops_docker_mlflow_env_artifacts"].values():
        mlflow |= set(mode)
    found = {"mlflow": mlflow, "postgresql": set(), "sftp": set()}
    for component, env in docker_service_env().items():
        found[component] |= set(env)
    return found


@pytest.fixture(scope="module")
def docker_env() -> dict[str, set[str]]:
    if not DOCKER_ROLE.is_dir():
        pytest.fail(f"{DOCKER_ROLE} is missing: the drift check compares the chart with it")
    return docker_target_env()


def test_docker_target_parse_found_every_image(docker_env: dict[str, set[str]]) -> None:
    for component, names in docker_env.items():
        assert len(names) >= 5, f"read only {names} for {component} from {DOCKER_ROLE}"


def test_no_drift_from_the_docker_target(
    docker_env: dict[str, set[str]], matrix_renders: dict[str, Rendered]
) -> None:
    """Every knob the Docker target fills, the chart fills too; both stay inside the contract."""
    chart_env: dict[str, set[str]] = {c: set() for c in CONTRACT}
    for rendered in matrix_renders.values():
        for component, container, _ in component_containers(rendered):
            chart_env[component] |= env_names(container)
    for component, names in docker_env.items():
        assert names <= CONTRACT[component].allowed_env(), (
            f"docker target: {names - CONTRACT[component].allowed_env()}"
        )
        missing = names - chart_env[component]
        assert not missing, (
            f"the Docker target sets {sorted(missing)} for {component}; the chart never does"
        )


def test_the_drift_check_sees_a_missing_setting(tmp_path: Path) -> None:
    contract = ImageContract(variables={"A": False, "B": True})
    assert contract.allowed_env() == {"A", "B", "B_FILE"}


# ---------- the two targets render the same effective configuration ----------

# The effective configuration the Docker role makes of its defaults.
DOCKER_EFFECTIVE = """{'env': {'mlflow': mlops_docker_mlflow_env, 'postgresql': services.postgresql,
           'sftp': services.sftp},
   'uid': mlops_docker_uid | int, 'tmp': mlops_docker_mlflow_tmp_size,
   'memory': {'mlflow': mlops_docker_mlflow_memory, 'postgresql': mlops_docker_postgresql_memory,
              'sftp': mlops_docker_sftp_memory}}"""
# Settings whose values name where things are on each target (hosts, mounts, URIs).
TARGET_SPECIFIC = {
    "MLFLOW_DB_HOST", "MLFLOW_ALLOWED_HOSTS", "MLFLOW_ARTIFACTS_DESTINATION",
    "MLFLOW_DEFAULT_ARTIFACT_ROOT", "MLFLOW_PEOPLE_DIR", "MLFLOW_SFTP_PRIVATE_KEY_FILE",
    "MLFLOW_SFTP_KNOWN_HOSTS_FILE", "SFTP_ACCESS", "SFTP_HOST_KEYS_DIR",
}  # fmt: skip


def mebibytes(size: str) -> int:
    """'1g', '1Gi', '512m', '512Mi' -> MiB."""
    number, unit = re.fullmatch(r"(\d+)([kmgKMG]i?)", size).groups()  # type: ignore[union-attr]
    return int(number) * {"k": 1 / 1024, "m": 1, "g": 1024}[unit[0].lower()]


@pytest.fixture(scope="module")
def docker_effective(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("docker-render")
    return render_docker_role(tmp, DOCKER_EFFECTIVE, services=docker_service_env())


def chart_effective(rendered: Rendered) -> dict[str, Any]:
    found: dict[str, Any] = {"env": {}, "memory": {}, "uid": set()}
    for component, container, spec in component_containers(rendered):
        if container["name"] in {"migrate", "wait-schema"}:
            continue
        found["env"][component] = env_map(container)
        found["memory"][component] = container["resources"]["limits"]["memory"]
        found["uid"].add(spec["securityContext"]["runAsUser"])
        if component == "mlflow":
            tmp = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}["/tmp"]
            found["tmp"] = next(v for v in spec["volumes"] if v["name"] == tmp)["emptyDir"]
    return found


def compare_targets(docker: dict[str, Any], chart: dict[str, Any]) -> list[str]:
    """The differences between the two targets' effective configurations, one line each."""
    differences = []
    for component, docker_env in docker["env"].items():
        chart_env = chart["env"][component]
        for name in sorted(set(docker_env) & set(chart_env) - TARGET_SPECIFIC):
            if not name.endswith("_FILE") and docker_env[name] != chart_env[name]:
                differences.append(
                    f"{name}: docker {docker_env[name]!r}, chart {chart_env[name]!r}"
                )
    for name, value in docker["memory"].items():
        if mebibytes(value) != mebibytes(chart["memory"][name]):
            differences.append(f"{name} memory: docker {value}, chart {chart['memory'][name]}")
    if chart["uid"] != {docker["uid"]}:
        differences.append(f"UID: docker {docker['uid']}, chart {chart['uid']}")
    if mebibytes(docker["tmp"]) != mebibytes(chart["tmp"]["sizeLimit"]):
        differences.append(
            f"MLflow /tmp: docker {docker['tmp']}, chart {chart['tmp']['sizeLimit']}"
        )
    return differences


def test_both_targets_render_the_same_configuration(
    docker_effective: dict[str, Any], matrix_renders: dict[str, Rendered]
) -> None:
    """Same settings (the defaults), same effective configuration: env values, UID, memory, /tmp."""
    chart = chart_effective(matrix_renders["defaults"])
    shared = set(docker_effective["env"]["mlflow"]) & set(chart["env"]["mlflow"]) - TARGET_SPECIFIC
    assert {"MLFLOW_AUTH_CACHE_TTL_SECONDS", "MLFLOW_WORKERS", "MLFLOW_PORT"} <= shared
    assert compare_targets(docker_effective, chart) == []


def test_the_comparison_sees_a_different_setting(
    docker_effective: dict[str, Any], matrix_renders: dict[str, Rendered]
) -> None:
    chart = chart_effective(matrix_renders["defaults"])
    docker = json.loads(json.dumps(docker_effective))
    docker["env"]["mlflow"]["MLFLOW_AUTH_CACHE_TTL_SECONDS"] = "61"
    docker["memory"]["postgresql"] = "512m"
    docker["uid"] = 1000
    assert compare_targets(docker, chart) == [
        "MLFLOW_AUTH_CACHE_TTL_SECONDS: docker '61', chart '60'",
        "postgresql memory: docker 512m, chart 1Gi",
        "UID: docker 1000, chart {10001}",
    ]
