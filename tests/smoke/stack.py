"""Where the three services of a deployed environment run, whatever its target.

The smoke suite asks a `Stack` for each service ("postgresql", "sftp", "mlflow"):

- `host_spec(service)`: a pytest-testinfra host spec (`docker://<container>`, the container
  build/<env>/stack.json names, or
  `kubectl://<pod>?namespace=...&container=...` for the pod the labels select);
- `exec_argv(service)`: the argv prefix that runs a command in it with stdin attached;
- `hardening_problems(service)`, `exposure_problems()`, `visible_configuration(service)`,
  `secret_values()`: the target's own view of the same checks (`docker inspect` on Docker, the
  pod spec and the Services on Kubernetes/OpenShift).

Everything that decides (names, labels, argv, pod selection, what counts as a problem) is a
pure function of settings and JSON documents, unit-tested in tests/unit/test_smoke_stack.py;
only the `run` callable talks to docker or kubectl.
"""

from __future__ import annotations

import base64
import json
import subprocess
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml
from mlopskit.stack import STACK_FILE, StackFileError, read_stack
from mlopskit.stack import Stack as StackFile

REPO_ROOT = Path(__file__).resolve().parents[2]
# Each service's name is also its pods' app.kubernetes.io/component and their main container's
# name (charts/mlops-kit/templates: postgresql.yaml, sftp.yaml, mlflow-deployment.yaml).
SERVICES = ("postgresql", "sftp", "mlflow")
KUBERNETES_TARGETS = frozenset({"kubernetes", "openshift"})
# The secrets the Docker target generates under build/<env>/secrets/ that containers must not show.
DOCKER_SECRET_FILES = (
    "postgresql_superuser_password",
    "postgresql_app_password",
    "mlflow_admin_password",
    "flask_secret_key",
)
COMMAND_TIMEOUT_S = 120

Runner = Callable[[Sequence[str]], str]


class StackError(RuntimeError):
    """The deployed stack is not where the settings say; the message names what to check."""


def run_command(argv: Sequence[str]) -> str:
    """Run argv (docker or kubectl) and return its stdout; StackError with stderr on failure."""
    try:
        result = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise StackError(f"{' '.join(argv)} did not answer within {COMMAND_TIMEOUT_S} s") from None
    if result.returncode != 0:
        raise StackError(f"{' '.join(argv)} exited {result.returncode}: {result.stderr.strip()}")
    return result.stdout


def role_defaults(role: str) -> dict[str, Any]:
    """defaults/main.yml of an Ansible role: the one source of the settings' default values."""
    path = REPO_ROOT / "ansible" / "roles" / role / "defaults" / "main.yml"
    return yaml.safe_load(path.read_text()) or {}


class Stack(Protocol):
    target: str

    def host_spec(self, service: str) -> str: ...
    def exec_argv(self, service: str) -> list[str]: ...
    def hardening_problems(self, service: str) -> list[str]: ...
    def exposure_problems(self) -> list[str]: ...
    def visible_configuration(self, service: str) -> str: ...
    def secret_values(self) -> list[str]: ...


def load_stack(
    env_name: str,
    settings: Mapping[str, Any],
    build_dir: Path,
    run: Runner = run_command,
    kubectl: str = "kubectl",
) -> Stack:
    """The Stack of deploy/<env>/settings.yml's target; a clear error for any other target."""
    target = settings.get("mlops_target")
    if target == "docker":
        return DockerStack.from_settings(env_name, settings, build_dir, run=run)
    if target in KUBERNETES_TARGETS:
        return KubernetesStack.from_settings(
            settings, run=run, kubectl=kubectl, build_dir=build_dir
        )
    raise StackError(
        f"deploy/{env_name}/settings.yml: mlops_target={target!r}; the smoke suite knows "
        f"docker, {', '.join(sorted(KUBERNETES_TARGETS))}"
    )


def _check_service(service: str) -> None:
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}; choose from {SERVICES}")


# ---------------------------------------------------------------- Docker


def docker_hardening_problems(config: Mapping[str, Any]) -> list[str]:
    """What `docker inspect` shows against the images' rules (README: restricted-v2 on Docker)."""
    host_config = config["HostConfig"]
    user = config["Config"]["User"] or ""
    checks = [
        (user.split(":")[0] not in {"", "0", "root"}, f"runs as {user!r}, not a non-root UID"),
        (user.endswith(":0"), f"must run in group 0, runs as {user!r}"),
        (host_config.get("ReadonlyRootfs") is True, "root filesystem is writable"),
        (host_config.get("CapDrop") == ["ALL"], f"CapDrop is {host_config.get('CapDrop')}"),
        (
            any(
                opt.startswith("no-new-privileges") for opt in host_config.get("SecurityOpt") or []
            ),
            "no-new-privileges is not set",
        ),
        ("/tmp" in (host_config.get("Tmpfs") or {}), "/tmp is not a tmpfs"),
        ((host_config.get("Memory") or 0) > 0, "has no memory limit"),
        (
            (host_config.get("RestartPolicy") or {}).get("Name")
            in {"unless-stopped", "always", "on-failure"},
            f"restart policy is {host_config.get('RestartPolicy')}",
        ),
        (
            ((config.get("State") or {}).get("Health") or {}).get("Status") == "healthy",
            "is not healthy",
        ),
    ]
    return [problem for ok, problem in checks if not ok]


def docker_exposure_problems(
    port_bindings: Mapping[str, Mapping[str, Any] | None], stack: StackFile
) -> list[str]:
    """Only the services stack.json publishes (MLflow, SFTP) are published, each exactly on
    its port and bind address; PostgreSQL publishes nothing."""
    problems = []
    for service in SERVICES:
        wanted = stack.service(service)
        published = list((port_bindings.get(service) or {}).values())
        if wanted.published_port is None:
            if published:
                name = "PostgreSQL" if service == "postgresql" else service
                problems.append(f"{name} is published on the host: {port_bindings[service]}")
            continue
        expected = [{"HostIp": wanted.bind_address, "HostPort": str(wanted.published_port)}]
        if published != [expected]:
            problems.append(f"{service} is published as {published}, expected [{expected}]")
    return problems


@dataclass
class DockerStack:
    """Target docker: the containers build/<env>/stack.json names (ansible/roles/mlops_docker
    writes it; the naming rule lives there only)."""

    stack: StackFile
    run: Runner = field(default=run_command, repr=False)
    target: str = "docker"

    @classmethod
    def from_settings(
        cls,
        env_name: str,
        settings: Mapping[str, Any],
        build_dir: Path,
        run: Runner = run_command,
    ) -> DockerStack:
        del settings  # what the deploy made is in stack.json, settings included
        try:
            stack = read_stack(build_dir / STACK_FILE, env_name)
        except StackFileError as exc:
            raise StackError(str(exc)) from None
        if stack.target != "docker":
            raise StackError(f"{stack.path} describes target {stack.target}, not docker")
        return cls(stack=stack, run=run)

    def container(self, service: str) -> str:
        _check_service(service)
        return self.stack.container(service)

    def host_spec(self, service: str) -> str:
        return f"docker://{self.container(service)}"

    def exec_argv(self, service: str) -> list[str]:
        return ["docker", "exec", "-i", self.container(service)]

    def inspect(self, service: str) -> dict[str, Any]:
        return json.loads(self.run(["docker", "inspect", self.container(service)]))[0]

    def hardening_problems(self, service: str) -> list[str]:
        return docker_hardening_problems(self.inspect(service))

    def exposure_problems(self) -> list[str]:
        bindings = {s: self.inspect(s)["HostConfig"]["PortBindings"] for s in SERVICES}
        return docker_exposure_problems(bindings, self.stack)

    def visible_configuration(self, service: str) -> str:
        config = self.inspect(service)["Config"]
        return " ".join((config.get("Env") or []) + (config.get("Cmd") or []))

    def secret_values(self) -> list[str]:
        return [
            (self.stack.controller.secrets_dir / name).read_text().strip()
            for name in DOCKER_SECRET_FILES
        ]


# ---------------------------------------------------------------- Kubernetes / OpenShift


def pod_selector(release: str, service: str) -> str:
    """The label selector of a service's pods (the chart's componentSelectorLabels)."""
    _check_service(service)
    return f"app.kubernetes.io/instance={release},app.kubernetes.io/component={service}"


def _container_ready(pod: Mapping[str, Any], container: str) -> bool:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return any(s.get("name") == container and s.get("ready") is True for s in statuses)


def select_pod(pods: Mapping[str, Any], container: str, selector: str = "") -> str:
    """Name of the pod to check, from `kubectl get pods -o json`: Running, not terminating,
    its container ready; the oldest first, so that repeated look-ups agree."""
    candidates = [
        pod
        for pod in pods.get("items") or []
        if (pod.get("status") or {}).get("phase") == "Running"
        and not (pod.get("metadata") or {}).get("deletionTimestamp")
        and _container_ready(pod, container)
    ]
    if not candidates:
        seen = ", ".join(
            f"{p['metadata']['name']} ({(p.get('status') or {}).get('phase', '?')})"
            for p in pods.get("items") or []
        )
        raise StackError(
            f"no running pod with a ready container {container!r} matches "
            f"{selector or 'the selector'} (found: {seen or 'none'}); check `make deploy` and "
            "`kubectl get pods`"
        )
    oldest = min(
        candidates,
        key=lambda p: (p["metadata"].get("creationTimestamp", ""), p["metadata"]["name"]),
    )
    return oldest["metadata"]["name"]


def _find_container(pod: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    for container in pod["spec"].get("containers") or []:
        if container.get("name") == name:
            return container
    raise StackError(f"pod {pod['metadata']['name']} has no container {name!r}")


def pod_hardening_problems(pod: Mapping[str, Any], container_name: str) -> list[str]:
    """The pod spec against restricted-v2 and the images' rules, for one container."""
    spec = pod["spec"]
    container = _find_container(pod, container_name)
    pod_context = spec.get("securityContext") or {}
    context = container.get("securityContext") or {}

    def effective(key: str) -> Any:
        """Container-level security settings override the pod's."""
        return context.get(key, pod_context.get(key))

    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    mounts = container.get("volumeMounts") or []
    tmp_volumes = [m["name"] for m in mounts if m.get("mountPath") == "/tmp"]
    capabilities = context.get("capabilities") or {}
    dropped = capabilities.get("drop") or []
    restart = spec.get("restartPolicy", "Always")
    seccomp = (effective("seccompProfile") or {}).get("type")
    uid, gid = effective("runAsUser"), effective("runAsGroup")
    secret_env = [
        e["name"]
        for e in container.get("env") or []
        if (e.get("valueFrom") or {}).get("secretKeyRef")
    ]
    host_ports = [p for p in container.get("ports") or [] if p.get("hostPort")]
    checks = [
        (effective("runAsNonRoot") is True, "runAsNonRoot is not true"),
        (uid is None or int(uid) != 0, f"runAsUser is {uid}"),
        (gid is None or int(gid) == 0, f"runAsGroup is {gid}, the images need group 0"),
        (context.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem is not true"),
        (context.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation is not false"),
        (context.get("privileged") is not True, "runs privileged"),
        ("ALL" in dropped, f"capabilities.drop is {dropped}"),
        (not capabilities.get("add"), f"adds capabilities {capabilities.get('add')}"),
        (seccomp == "RuntimeDefault", f"seccompProfile is {seccomp}, not RuntimeDefault"),
        (
            bool(((container.get("resources") or {}).get("limits") or {}).get("memory")),
            "has no memory limit",
        ),
        (
            len(tmp_volumes) == 1 and "emptyDir" in volumes.get(tmp_volumes[0], {}),
            "/tmp is not an emptyDir",
        ),
        (not secret_env, f"secrets in environment variables {secret_env}; mount them as files"),
        (
            not any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")),
            "shares a host namespace",
        ),
        (not host_ports, f"publishes host ports {host_ports}"),
        (restart == "Always", f"restartPolicy is {restart}"),
        (_container_ready(pod, container_name), f"container {container_name} is not ready"),
    ]
    return [problem for ok, problem in checks if not ok]


def service_exposure_problems(services: Mapping[str, Any]) -> list[str]:
    """PostgreSQL's Services (`kubectl get svc -l ...component=postgresql -o json`) stay inside
    the cluster: type ClusterIP, no external IPs, no node ports."""
    items = services.get("items") or []
    if not items:
        return ["no PostgreSQL Service found (is postgresql.enabled false, or the release wrong?)"]
    problems = []
    for svc in items:
        name, spec = svc["metadata"]["name"], svc.get("spec") or {}
        if spec.get("type", "ClusterIP") != "ClusterIP":
            problems.append(f"Service {name} is of type {spec.get('type')}, not ClusterIP")
        if spec.get("externalIPs"):
            problems.append(f"Service {name} has externalIPs {spec['externalIPs']}")
        node_ports = [p["nodePort"] for p in spec.get("ports") or [] if p.get("nodePort")]
        if node_ports:
            problems.append(f"Service {name} opens node ports {node_ports}")
    return problems


def pod_visible_configuration(pod: Mapping[str, Any]) -> str:
    """What anyone who may read the pod sees: annotations, env values, command and args."""
    spec = pod["spec"]
    shown: list[Any] = [(pod.get("metadata") or {}).get("annotations") or {}]
    for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        shown.append([e.get("value", "") for e in container.get("env") or []])
        shown.append(container.get("command") or [])
        shown.append(container.get("args") or [])
    return json.dumps(shown)


def mounted_secret_keys(pod: Mapping[str, Any]) -> dict[str, set[str] | None]:
    """Secret name -> the keys a pod mounts from it (None: every key), from its volumes
    (direct or projected). Keys a pod does not mount (e.g. admin-username) are not secrets."""
    mounted: dict[str, set[str] | None] = {}

    def add(name: str, items: list[Mapping[str, Any]] | None) -> None:
        if not items or (name in mounted and mounted[name] is None):
            mounted[name] = None
            return
        mounted[name] = (mounted.get(name) or set()) | {item["key"] for item in items}

    for volume in pod["spec"].get("volumes") or []:
        if "secret" in volume:
            add(volume["secret"]["secretName"], volume["secret"].get("items"))
        for source in (volume.get("projected") or {}).get("sources") or []:
            if "secret" in source:
                add(source["secret"]["name"], source["secret"].get("items"))
    return mounted


def secret_data_values(secret: Mapping[str, Any], keys: set[str] | None = None) -> list[str]:
    """The decoded non-empty values of a Secret document, of `keys` only when given."""
    values = []
    for key, encoded in sorted((secret.get("data") or {}).items()):
        if keys is not None and key not in keys:
            continue
        value = base64.b64decode(encoded).decode(errors="replace").strip()
        if value:
            values.append(value)
    return values


def kubectl_host_spec(
    pod: str, namespace: str, container: str, kubeconfig: str = "", context: str = ""
) -> str:
    query = {"namespace": namespace, "container": container}
    if kubeconfig:
        query["kubeconfig"] = kubeconfig
    if context:
        query["context"] = context
    return f"kubectl://{pod}?{urllib.parse.urlencode(query)}"


@dataclass
class KubernetesStack:
    """Targets kubernetes and openshift: the pods of Helm release <release> in <namespace>."""

    namespace: str
    release: str
    target: str = "kubernetes"
    kubeconfig: str = ""
    context: str = ""
    kubectl: str = "kubectl"
    run: Runner = field(default=run_command, repr=False)
    _pods: dict[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_settings(
        cls,
        settings: Mapping[str, Any],
        run: Runner = run_command,
        kubectl: str = "kubectl",
        build_dir: Path | None = None,
    ) -> KubernetesStack:
        """Namespace and release from build/<env>/stack.json when the deploy wrote one (the
        release as deployed), else from the settings; the cluster connection from the settings."""
        defaults = role_defaults("mlops_kubernetes")

        def setting(key: str) -> str:
            return str(settings.get(key, defaults.get(key)) or "")

        kubeconfig = setting("mlops_kubernetes_kubeconfig")
        if kubeconfig:
            # A relative kubeconfig (deploy/cluster) is relative to the repository root, as for
            # the role (make runs ansible-playbook there).
            kubeconfig = str(REPO_ROOT / Path(kubeconfig).expanduser())
        namespace, release = (
            setting("mlops_kubernetes_namespace"),
            setting("mlops_kubernetes_release"),
        )
        if build_dir is not None and (build_dir / STACK_FILE).is_file():
            try:
                deployed = read_stack(build_dir / STACK_FILE, build_dir.name)
            except StackFileError as exc:
                raise StackError(str(exc)) from None
            namespace, release = deployed.namespace, deployed.release
        return cls(
            namespace=namespace,
            release=release,
            target=str(settings.get("mlops_target", "kubernetes")),
            kubeconfig=kubeconfig,
            context=setting("mlops_kubernetes_context"),
            kubectl=kubectl,
            run=run,
        )

    def kubectl_argv(self, *args: str) -> list[str]:
        """kubectl with the environment's kubeconfig and context, then args."""
        argv = [self.kubectl]
        if self.kubeconfig:
            argv += ["--kubeconfig", self.kubeconfig]
        if self.context:
            argv += ["--context", self.context]
        return [*argv, *args]

    def pods_argv(self, service: str) -> list[str]:
        return self.kubectl_argv(
            "get", "pods", "-n", self.namespace, "-l", pod_selector(self.release, service),
            "--field-selector=status.phase=Running", "-o", "json",
        )  # fmt: skip

    def pod(self, service: str) -> str:
        """The pod checked for a service; looked up once per session."""
        if service not in self._pods:
            document = json.loads(self.run(self.pods_argv(service)))
            selector = f"{pod_selector(self.release, service)} in namespace {self.namespace}"
            self._pods[service] = select_pod(document, service, selector)
        return self._pods[service]

    def host_spec(self, service: str) -> str:
        return kubectl_host_spec(
            self.pod(service), self.namespace, service, self.kubeconfig, self.context
        )

    def exec_argv(self, service: str) -> list[str]:
        return self.kubectl_argv(
            "exec", "-i", "-n", self.namespace, self.pod(service), "-c", service, "--"
        )

    def get_json(self, *args: str) -> dict[str, Any]:
        argv = self.kubectl_argv("get", "-n", self.namespace, *args, "-o", "json")
        return json.loads(self.run(argv))

    def pod_document(self, service: str) -> dict[str, Any]:
        return self.get_json("pod", self.pod(service))

    def hardening_problems(self, service: str) -> list[str]:
        return pod_hardening_problems(self.pod_document(service), service)

    def exposure_problems(self) -> list[str]:
        return service_exposure_problems(
            self.get_json("services", "-l", pod_selector(self.release, "postgresql"))
        )

    def visible_configuration(self, service: str) -> str:
        return pod_visible_configuration(self.pod_document(service))

    def secret_values(self) -> list[str]:
        mounted: dict[str, set[str] | None] = {}
        for service in SERVICES:
            for name, keys in mounted_secret_keys(self.pod_document(service)).items():
                known = mounted.get(name, set())
                mounted[name] = None if keys is None or known is None else known | keys
        return [
            value
            for name, keys in sorted(mounted.items())
            for value in secret_data_values(self.get_json("secret", name), keys)
        ]
