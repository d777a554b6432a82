"""A deployed Kubernetes or OpenShift environment as backup and restore see it: everything
through the API server (kubectl exec, get, patch, scale), never through the nodes' volumes.

Names come from build/<env>/stack.json (the namespace, release, kubeconfig and backup
directory the last deploy used); pods and workloads are found by the chart's labels
app.kubernetes.io/instance=<release> and app.kubernetes.io/component=<service>, whose main
container has the service's name.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .docker_env import PodExec
from .environments import Environment
from .k8s_tools import ToolError, find_tool
from .shell import CommandError
from .stack import Stack, load_stack

KUBE_TARGETS = ("kubernetes", "openshift")
# The release's Secrets a backup keeps (what the chart generated: passwords, keys, the people's
# passwords). Matched by the chart's labels, never by re-deriving its names.
SECRET_COMPONENTS = ("postgresql", "mlflow", "sftp")
KUBECTL_TIMEOUT_S = 3600


@dataclass(frozen=True)
class KubeEnv:
    env: Environment
    stack: Stack
    kubectl: tuple[str, ...]
    backup_root: Path

    @property
    def release(self) -> str:
        return self.stack.release

    def selector(self, component: str) -> str:
        return f"app.kubernetes.io/instance={self.release},app.kubernetes.io/component={component}"

    def run(self, *args: str, data: bytes | None = None) -> str:
        result = subprocess.run(
            [*self.kubectl, *args], input=data, capture_output=True, check=False,
            timeout=KUBECTL_TIMEOUT_S,
        )  # fmt: skip
        if result.returncode != 0:
            raise CommandError(
                f"kubectl {' '.join(args[:4])} failed: "
                f"{result.stderr.decode(errors='replace').strip()[-800:]}"
            )
        return result.stdout.decode()

    def items(self, kind: str, component: str) -> list[dict]:
        out = self.run("get", kind, "-l", self.selector(component), "-o", "json")
        return json.loads(out)["items"]

    def pod(self, component: str) -> str:
        """A running, ready pod of the component."""
        for pod in self.items("pods", component):
            statuses = pod.get("status", {}).get("containerStatuses") or []
            if (
                pod["status"].get("phase") == "Running"
                and statuses
                and all(status.get("ready") for status in statuses)
            ):
                return str(pod["metadata"]["name"])
        raise CommandError(
            f"no ready {component} pod of release {self.release} in namespace "
            f"{self.stack.namespace}; deploy first: make deploy ENV={self.env.name}"
        )

    def exec_target(self, component: str) -> PodExec:
        """Where a command runs in the component's main container."""
        pod = self.pod(component)
        argv = (*self.kubectl, "exec", "-i", pod, "-c", component, "--")
        return PodExec(argv, f"{pod}/{component}")

    def workload(self, component: str) -> str:
        """kind/name of the component's Deployment or StatefulSet."""
        names = self.run("get", "deployments,statefulsets", "-l", self.selector(component),
                         "-o", "name").split()  # fmt: skip
        if len(names) != 1:
            raise CommandError(f"release {self.release} has {len(names)} {component} workloads")
        return names[0]

    def replicas(self, workload: str) -> int:
        return int(self.run("get", workload, "-o", "jsonpath={.spec.replicas}") or 0)

    def scale(self, workload: str, replicas: int, component: str) -> None:
        self.run("scale", workload, f"--replicas={replicas}")
        if replicas == 0:
            # Older kubectl fails when nothing matches (the pods are gone already).
            try:
                self.run("wait", "--for=delete", "pods", "-l", self.selector(component),
                         "--timeout=300s")  # fmt: skip
            except CommandError as exc:
                if "no matching resources" not in str(exc):
                    raise
        else:
            self.rollout_status(workload)

    def rollout_status(self, workload: str) -> None:
        self.run("rollout", "status", workload, "--timeout=600s")

    def image(self, component: str) -> str:
        """The image of the component's main container, as the workload names it."""
        workload = json.loads(self.run("get", self.workload(component), "-o", "json"))
        for container in workload["spec"]["template"]["spec"]["containers"]:
            if container["name"] == component:
                return str(container["image"])
        return ""

    def secrets(self) -> dict[str, dict[str, str]]:
        """The release's Secrets that its chart made: name -> data (base64 values)."""
        found: dict[str, dict[str, str]] = {}
        for component in SECRET_COMPONENTS:
            for secret in self.items("secrets", component):
                found[secret["metadata"]["name"]] = dict(secret.get("data") or {})
        return found

    def patch_secret(self, name: str, data: dict[str, str]) -> bool:
        """Make the Secret's data what `data` says (keys it lacks are removed); True when it
        changed. The patch travels in a 0600 file, never on a command line."""
        live = json.loads(self.run("get", "secret", name, "-o", "json")).get("data") or {}
        if live == data:
            return False
        patch = {"data": {**{key: None for key in live if key not in data}, **data}}
        with tempfile.NamedTemporaryFile("w", suffix=".json") as handle:  # created 0600
            json.dump(patch, handle)
            handle.flush()
            self.run("patch", "secret", name, "--type", "merge", "--patch-file", handle.name)
        return True


def kube_env(env: Environment) -> KubeEnv:
    stack = load_stack(env.name)
    if stack.target not in KUBE_TARGETS:
        raise CommandError(f"{stack.path} describes target {stack.target}, not Kubernetes")
    if stack.backup_dir is None:
        raise CommandError(
            f"{stack.path} names no backup directory (written by an older deploy): run "
            f"`make deploy ENV={env.name}` first"
        )
    try:
        kubectl = [str(find_tool("kubectl"))]
    except ToolError as exc:
        raise CommandError(str(exc)) from None
    if kubeconfig := stack.extra.get("kubeconfig"):
        kubectl += ["--kubeconfig", str(kubeconfig)]
    if context := stack.extra.get("context"):
        kubectl += ["--context", str(context)]
    kubectl += ["--namespace", stack.namespace]
    return KubeEnv(env, stack, tuple(kubectl), stack.backup_dir)
