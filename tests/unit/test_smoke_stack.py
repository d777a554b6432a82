"""Pure logic of tests/smoke/stack.py: settings -> names, labels and argv; pod selection from
`kubectl get pods -o json`; what counts as a hardening or exposure problem. No cluster, no Docker:
the few commands a Stack would run are answered from sample documents."""

from __future__ import annotations

import base64
import copy
import json
import re
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml
from mlopskit.stack import parse_stack

from tests.smoke.stack import (
    REPO_ROOT,
    SERVICES,
    DockerStack,
    KubernetesStack,
    StackError,
    docker_exposure_problems,
    docker_hardening_problems,
    kubectl_host_spec,
    load_stack,
    mounted_secret_keys,
    pod_hardening_problems,
    pod_selector,
    pod_visible_configuration,
    secret_data_values,
    select_pod,
    service_exposure_problems,
)
from tests.unit.test_stack_file import docker_document


def deployed(build_dir: Path, env: str = "e2e", **services: dict) -> Path:
    """build_dir with the stack.json a Docker deploy of <env> writes; services override."""
    document = docker_document(build_dir.parent, env)
    for key, service in document["services"].items():
        service["container"] = f"mlops-{env}-{key}"
        service.update(services.get(key, {}))
    document["controller"]["secrets_dir"] = str(build_dir / "secrets")
    build_dir.mkdir(parents=True, exist_ok=True)
    (build_dir / "stack.json").write_text(json.dumps(document))
    return build_dir


CHART_TEMPLATES = REPO_ROOT / "charts" / "mlops-kit" / "templates"
TEMPLATE_OF = {
    "postgresql": "postgresql.yaml",
    "sftp": "sftp.yaml",
    "mlflow": "mlflow-deployment.yaml",
}


def example_settings(name: str) -> dict:
    return yaml.safe_load((REPO_ROOT / "deploy" / name / "settings.yml").read_text())


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def pod(
    name: str,
    container: str = "mlflow",
    *,
    phase: str = "Running",
    ready: bool = True,
    created: str = "2025-01-01T00:00:00Z",
    terminating: bool = False,
) -> dict:
    """A pod as the chart renders it (restricted-v2 settings) and the API server reports it."""
    metadata: dict = {"name": name, "creationTimestamp": created, "annotations": {}}
    if terminating:
        metadata["deletionTimestamp"] = "2025-01-02T00:00:00Z"
    return {
        "metadata": metadata,
        "spec": {
            "restartPolicy": "Always",
            "securityContext": {
                "runAsNonRoot": True,
                "seccompProfile": {"type": "RuntimeDefault"},
                "runAsUser": 1000,
                "runAsGroup": 0,
                "fsGroup": 0,
            },
            "initContainers": [
                {"name": "migrate", "args": ["migrate"], "env": [{"name": "A", "value": "init"}]}
            ],
            "containers": [
                {
                    "name": container,
                    "args": ["server"],
                    "env": [
                        {"name": "MLFLOW_DB_PASSWORD_FILE", "value": "/etc/mlflow/db/password"},
                        {"name": "MLFLOW_AUTH_ADMIN_USERNAME", "value": "admin"},
                    ],
                    "ports": [{"name": "http", "containerPort": 5000, "protocol": "TCP"}],
                    "securityContext": {
                        "runAsNonRoot": True,
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "privileged": False,
                        "capabilities": {"drop": ["ALL"]},
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "resources": {"limits": {"memory": "2Gi"}},
                    "volumeMounts": [
                        {"name": "tmp", "mountPath": "/tmp"},
                        {"name": "db-password", "mountPath": "/etc/mlflow/db", "readOnly": True},
                    ],
                }
            ],
            "volumes": [
                {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "256Mi"}},
                {
                    "name": "db-password",
                    "secret": {
                        "secretName": "mlops-mlops-kit-postgresql",
                        "items": [{"key": "password", "path": "password"}],
                    },
                },
                {
                    "name": "auth",
                    "secret": {
                        "secretName": "mlops-mlops-kit-mlflow-auth",
                        "items": [
                            {"key": "admin-password", "path": "admin-password"},
                            {"key": "flask-secret-key", "path": "flask-secret-key"},
                        ],
                    },
                },
                {"name": "host-keys", "secret": {"secretName": "mlops-mlops-kit-sftp-host-keys"}},
            ],
        },
        "status": {
            "phase": phase,
            "containerStatuses": [{"name": container, "ready": ready}],
        },
    }


class FakeKubectl:
    """Answers the argv a KubernetesStack runs from sample documents, and records them."""

    def __init__(self, documents: dict[str, dict]) -> None:
        self.documents = documents
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> str:
        self.calls.append(list(argv))
        for marker, document in self.documents.items():
            if marker in argv:
                return json.dumps(document)
        raise AssertionError(f"unexpected command {argv}")


# ---------------------------------------------------------------- settings -> names and argv


def test_docker_names_come_from_stack_json(tmp_path: Path) -> None:
    stack = load_stack("e2e", example_settings("e2e"), deployed(tmp_path / "e2e"))
    assert isinstance(stack, DockerStack)
    assert stack.target == "docker"
    assert stack.host_spec("postgresql") == "docker://mlops-e2e-postgresql"
    assert stack.exec_argv("mlflow") == ["docker", "exec", "-i", "mlops-e2e-mlflow"]


def test_docker_without_stack_json_says_to_deploy(tmp_path: Path) -> None:
    with pytest.raises(StackError, match=r"build/staging/stack.json does not exist"):
        load_stack("staging", {"mlops_target": "docker"}, tmp_path / "staging")


def test_unknown_service_is_refused(tmp_path: Path) -> None:
    stack = load_stack("e2e", example_settings("e2e"), deployed(tmp_path / "e2e"))
    with pytest.raises(ValueError, match="unknown service 'postgres'"):
        stack.host_spec("postgres")


@pytest.mark.parametrize("target", [None, "swarm"])
def test_unknown_target_names_the_setting(tmp_path: Path, target: str | None) -> None:
    settings = {} if target is None else {"mlops_target": target}
    with pytest.raises(StackError, match=r"deploy/x/settings\.yml: mlops_target="):
        load_stack("x", settings, tmp_path)


@pytest.mark.parametrize(
    ("env", "target"), [("kubernetes-example", "kubernetes"), ("openshift-example", "openshift")]
)
def test_kubernetes_examples_give_namespace_release_and_target(env: str, target: str) -> None:
    stack = load_stack(env, example_settings(env), Path("/nonexistent"), kubectl="/bin/kubectl")
    assert isinstance(stack, KubernetesStack)
    assert (stack.namespace, stack.release, stack.target) == ("mlops", "mlops", target)
    assert stack.kubectl_argv("version") == ["/bin/kubectl", "version"]


def test_kubernetes_defaults_come_from_the_role() -> None:
    defaults = yaml.safe_load(
        (REPO_ROOT / "ansible/roles/mlops_kubernetes/defaults/main.yml").read_text()
    )
    stack = KubernetesStack.from_settings({"mlops_target": "kubernetes"})
    assert stack.namespace == defaults["mlops_kubernetes_namespace"]
    assert stack.release == defaults["mlops_kubernetes_release"]
    assert (stack.kubeconfig, stack.context) == ("", "")


def test_pod_selector_uses_the_charts_labels() -> None:
    assert pod_selector("team-a", "postgresql") == (
        "app.kubernetes.io/instance=team-a,app.kubernetes.io/component=postgresql"
    )
    assert [pod_selector("r", s).rsplit("=", 1)[1] for s in SERVICES] == [
        "postgresql",
        "sftp",
        "mlflow",
    ]


@pytest.mark.parametrize("service", SERVICES)
def test_component_and_container_names_match_the_chart(service: str) -> None:
    template = (CHART_TEMPLATES / TEMPLATE_OF[service]).read_text()
    assert f'"component" "{service}"' in template
    assert re.search(rf"^      containers:\n        - name: {service}$", template, re.M)


def test_kubectl_argv_carries_kubeconfig_and_context() -> None:
    stack = KubernetesStack.from_settings(
        {
            "mlops_target": "kubernetes",
            "mlops_kubernetes_namespace": "ml",
            "mlops_kubernetes_release": "prod",
            "mlops_kubernetes_kubeconfig": "/etc/kube/config",
            "mlops_kubernetes_context": "east",
        }
    )
    assert stack.pods_argv("sftp") == [
        "kubectl", "--kubeconfig", "/etc/kube/config", "--context", "east",
        "get", "pods", "-n", "ml",
        "-l", "app.kubernetes.io/instance=prod,app.kubernetes.io/component=sftp",
        "--field-selector=status.phase=Running", "-o", "json",
    ]  # fmt: skip


def test_kubernetes_host_spec_and_exec_argv_name_the_selected_pod() -> None:
    fake = FakeKubectl({"get": {"items": [pod("mlops-mlops-kit-mlflow-7d9-abc")]}})
    stack = KubernetesStack(namespace="ml", release="prod", context="east", run=fake)
    spec = stack.host_spec("mlflow")
    url = urllib.parse.urlparse(spec)
    assert (url.scheme, url.netloc) == ("kubectl", "mlops-mlops-kit-mlflow-7d9-abc")
    assert urllib.parse.parse_qs(url.query) == {
        "namespace": ["ml"],
        "container": ["mlflow"],
        "context": ["east"],
    }
    assert stack.exec_argv("mlflow") == [
        "kubectl", "--context", "east",
        "exec", "-i", "-n", "ml", "mlops-mlops-kit-mlflow-7d9-abc", "-c", "mlflow", "--",
    ]  # fmt: skip
    assert len(fake.calls) == 1, "the pod is looked up once per service"


def test_host_spec_is_one_testinfra_understands() -> None:
    from testinfra.backend import parse_hostspec

    spec = kubectl_host_spec("p-0", "ns", "postgresql", "/k/config", "ctx")
    assert parse_hostspec(spec) == (
        "p-0",
        {
            "connection": "kubectl",
            "namespace": "ns",
            "container": "postgresql",
            "kubeconfig": "/k/config",
            "context": "ctx",
        },
    )


# ---------------------------------------------------------------- pod selection


def test_select_pod_takes_the_oldest_ready_running_pod() -> None:
    document = {
        "items": [
            pod("new", created="2025-03-01T00:00:00Z"),
            pod("not-ready", created="2024-01-01T00:00:00Z", ready=False),
            pod("leaving", created="2024-01-02T00:00:00Z", terminating=True),
            pod("pending", created="2024-01-03T00:00:00Z", phase="Pending"),
            pod("old", created="2025-02-01T00:00:00Z"),
        ]
    }
    assert select_pod(document, "mlflow") == "old"


def test_select_pod_needs_the_named_container_ready() -> None:
    document = {"items": [pod("p", container="sidecar")]}
    with pytest.raises(StackError, match="ready container 'mlflow'"):
        select_pod(document, "mlflow")


def test_no_matching_pod_is_a_clear_error() -> None:
    document = {"items": [pod("mlflow-1", phase="Pending")]}
    with pytest.raises(StackError, match=r"found: mlflow-1 \(Pending\).*make deploy"):
        select_pod(document, "mlflow", "app.kubernetes.io/instance=x in namespace y")
    with pytest.raises(StackError, match="found: none"):
        select_pod({"items": []}, "mlflow")


# ---------------------------------------------------------------- hardening on Kubernetes


def test_the_charts_pod_settings_have_no_problem() -> None:
    assert pod_hardening_problems(pod("p"), "mlflow") == []


def test_openshift_style_pod_without_uid_or_group_passes() -> None:
    document = pod("p")
    for key in ("runAsUser", "runAsGroup", "fsGroup"):
        del document["spec"]["securityContext"][key]
    document["spec"]["containers"][0]["securityContext"]["runAsUser"] = 1000680000
    assert pod_hardening_problems(document, "mlflow") == []


def test_pod_level_settings_are_inherited_and_overridden() -> None:
    document = pod("p")
    context = document["spec"]["containers"][0]["securityContext"]
    del context["seccompProfile"], context["runAsNonRoot"]
    assert pod_hardening_problems(document, "mlflow") == []
    context["seccompProfile"] = {"type": "Unconfined"}
    assert pod_hardening_problems(document, "mlflow") == [
        "seccompProfile is Unconfined, not RuntimeDefault"
    ]


def _set(path: str, value: object):
    def change(document: dict) -> None:
        *parents, last = path.split(".")
        node = document
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        index = int(last) if last.isdigit() else last
        if value is None:
            del node[index]
        else:
            node[index] = value

    return change


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (_set("spec.containers.0.securityContext.runAsNonRoot", False), "runAsNonRoot"),
        (_set("spec.securityContext.runAsUser", 0), "runAsUser is 0"),
        (_set("spec.securityContext.runAsGroup", 1000), "runAsGroup is 1000"),
        (_set("spec.containers.0.securityContext.readOnlyRootFilesystem", None), "readOnlyRoot"),
        (_set("spec.containers.0.securityContext.allowPrivilegeEscalation", True), "Escalation"),
        (_set("spec.containers.0.securityContext.privileged", True), "privileged"),
        (_set("spec.containers.0.securityContext.capabilities", {"drop": ["NET_RAW"]}), "drop"),
        (
            _set("spec.containers.0.securityContext.capabilities", {"drop": ["ALL"], "add": ["X"]}),
            "adds capabilities",
        ),
        (_set("spec.containers.0.resources", {"requests": {"memory": "1Gi"}}), "memory limit"),
        (_set("spec.volumes.0", {"name": "tmp", "hostPath": {"path": "/tmp"}}), "/tmp"),
        (_set("spec.containers.0.volumeMounts", []), "/tmp is not an emptyDir"),
        (
            _set(
                "spec.containers.0.env.0",
                {"name": "P", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            ),
            "secrets in environment variables ['P']",
        ),
        (_set("spec.hostNetwork", True), "host namespace"),
        (_set("spec.containers.0.ports.0.hostPort", 5000), "host ports"),
        (_set("spec.restartPolicy", "Never"), "restartPolicy is Never"),
        (_set("status.containerStatuses.0.ready", False), "not ready"),
    ],
)
def test_each_weakened_setting_is_reported(change, problem: str) -> None:
    document = copy.deepcopy(pod("p"))
    change(document)
    problems = pod_hardening_problems(document, "mlflow")
    assert len(problems) == 1, problems
    assert problem in problems[0]


def test_hardening_of_a_missing_container_is_an_error() -> None:
    with pytest.raises(StackError, match="no container 'sftp'"):
        pod_hardening_problems(pod("p"), "sftp")


# ---------------------------------------------------------------- exposure


def service(name: str, kind: str = "ClusterIP", **spec: object) -> dict:
    ports = [{"name": "postgresql", "port": 5432, "protocol": "TCP"}]
    return {"metadata": {"name": name}, "spec": {"type": kind, "ports": ports, **spec}}


def test_clusterip_postgresql_services_are_fine() -> None:
    document = {"items": [service("pg"), service("pg-headless", clusterIP="None")]}
    assert service_exposure_problems(document) == []


def test_exposed_postgresql_services_are_reported() -> None:
    node_port = service("pg", "NodePort")
    node_port["spec"]["ports"][0]["nodePort"] = 30432
    document = {"items": [node_port, service("pg-ext", externalIPs=["203.0.113.9"])]}
    assert service_exposure_problems(document) == [
        "Service pg is of type NodePort, not ClusterIP",
        "Service pg opens node ports [30432]",
        "Service pg-ext has externalIPs ['203.0.113.9']",
    ]


def test_no_postgresql_service_is_a_problem() -> None:
    assert "no PostgreSQL Service" in service_exposure_problems({"items": []})[0]


# ---------------------------------------------------------------- secrets on Kubernetes


def test_only_mounted_secret_keys_count_as_secrets() -> None:
    mounted = mounted_secret_keys(pod("p"))
    assert mounted == {
        "mlops-mlops-kit-postgresql": {"password"},
        "mlops-mlops-kit-mlflow-auth": {"admin-password", "flask-secret-key"},
        "mlops-mlops-kit-sftp-host-keys": None,
    }
    auth = {"data": {"admin-username": b64("admin"), "admin-password": b64("s3cr3t\n"),
                     "flask-secret-key": b64("k3y")}}  # fmt: skip
    values = secret_data_values(auth, mounted["mlops-mlops-kit-mlflow-auth"])
    assert values == ["s3cr3t", "k3y"]
    assert secret_data_values(auth) == ["s3cr3t", "admin", "k3y"]


def test_visible_configuration_covers_every_container() -> None:
    shown = pod_visible_configuration(pod("p"))
    for expected in ("init", "migrate", "server", "/etc/mlflow/db/password", "admin"):
        assert expected in shown


def test_kubernetes_secret_values_come_from_the_pods_mounts() -> None:
    postgres = {"password": b64("pg-app"), "postgres-password": b64("pg-su")}
    auth = {"admin-username": b64("admin"), "admin-password": b64("adm")}
    documents = {
        "mlops-mlops-kit-postgresql": {"data": postgres},
        "mlops-mlops-kit-mlflow-auth": {"data": auth},
        "mlops-mlops-kit-sftp-host-keys": {"data": {"ssh_host_ecdsa_key": b64("KEY")}},
        "pod": pod("p"),
        "pods": {"items": [pod("pg-0", "postgresql"), pod("sftp-1", "sftp"), pod("p")]},
    }
    stack = KubernetesStack(namespace="ml", release="mlops", run=FakeKubectl(documents))
    assert sorted(stack.secret_values()) == ["KEY", "adm", "pg-app"]


# ---------------------------------------------------------------- Docker


def inspect_document() -> dict:
    return {
        "Config": {"User": "10001:0", "Env": ["A=1"], "Cmd": ["server"]},
        "HostConfig": {
            "ReadonlyRootfs": True,
            "CapDrop": ["ALL"],
            "SecurityOpt": ["no-new-privileges:true"],
            "Tmpfs": {"/tmp": "rw,size=64m"},
            "Memory": 536870912,
            "RestartPolicy": {"Name": "unless-stopped"},
            "PortBindings": {},
        },
        "State": {"Health": {"Status": "healthy"}},
    }


def test_docker_hardened_container_has_no_problem() -> None:
    assert docker_hardening_problems(inspect_document()) == []


@pytest.mark.parametrize(
    ("section", "key", "value", "problem"),
    [
        ("Config", "User", "0:0", "non-root UID"),
        ("Config", "User", "10001", "group 0"),
        ("HostConfig", "ReadonlyRootfs", False, "writable"),
        ("HostConfig", "CapDrop", None, "CapDrop"),
        ("HostConfig", "SecurityOpt", [], "no-new-privileges"),
        ("HostConfig", "Tmpfs", None, "/tmp"),
        ("HostConfig", "Memory", 0, "memory limit"),
        ("HostConfig", "RestartPolicy", {"Name": "no"}, "restart policy"),
        ("State", "Health", {"Status": "unhealthy"}, "not healthy"),
    ],
)
def test_docker_weakened_setting_is_reported(section, key, value, problem) -> None:
    document = inspect_document()
    document[section][key] = value
    problems = docker_hardening_problems(document)
    assert len(problems) == 1, problems
    assert problem in problems[0]


def test_docker_exposure(tmp_path: Path) -> None:
    document = docker_document(tmp_path)
    document["services"]["mlflow"]["published_port"] = 18500
    document["services"]["sftp"]["published_port"] = 2222
    settings = parse_stack(document, tmp_path / "x" / "stack.json")
    bindings = {
        "postgresql": {},
        "mlflow": {"5000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18500"}]},
        "sftp": {"2222/tcp": [{"HostIp": "127.0.0.1", "HostPort": "2222"}]},
    }
    assert docker_exposure_problems(bindings, settings) == []
    everywhere = "0.0.0.0"  # noqa: S104 (the exposure the check must catch)
    bindings["postgresql"] = {"5432/tcp": [{"HostIp": everywhere, "HostPort": "5432"}]}
    bindings["sftp"] = {"2222/tcp": [{"HostIp": everywhere, "HostPort": "2222"}]}
    problems = docker_exposure_problems(bindings, settings)
    assert [p.split(" ", 1)[0] for p in problems] == ["PostgreSQL", "sftp"]


def test_docker_stack_reads_inspect_and_secrets(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    for index, name in enumerate(
        ("postgresql_superuser_password", "postgresql_app_password", "mlflow_admin_password",
         "flask_secret_key")
    ):  # fmt: skip
        (tmp_path / "secrets" / name).write_text(f"value-{index}\n")
    calls = []

    def run(argv: Sequence[str]) -> str:
        calls.append(list(argv))
        return json.dumps([inspect_document()])

    stack = DockerStack.from_settings(
        "e2e", {"mlops_target": "docker"}, deployed(tmp_path), run=run
    )
    assert stack.secret_values() == ["value-0", "value-1", "value-2", "value-3"]
    assert stack.visible_configuration("mlflow") == "A=1 server"
    assert stack.hardening_problems("sftp") == []
    assert calls == [
        ["docker", "inspect", "mlops-e2e-mlflow"],
        ["docker", "inspect", "mlops-e2e-sftp"],
    ]


def test_kubernetes_release_comes_from_stack_json(tmp_path: Path) -> None:
    document = docker_document(tmp_path, "k")
    document.update(target="kubernetes", namespace="deployed-ns", release="deployed-rel")
    document["services"] = {"mlflow": {"service": "s", "port": 5000}}
    (tmp_path / "k").mkdir()
    (tmp_path / "k" / "stack.json").write_text(json.dumps(document))
    settings = {"mlops_target": "kubernetes", "mlops_kubernetes_namespace": "other"}
    stack = load_stack("k", settings, tmp_path / "k")
    assert isinstance(stack, KubernetesStack)
    assert (stack.namespace, stack.release) == ("deployed-ns", "deployed-rel")
