"""Kubernetes area of `make bench`: the tracking figures of the chart on the throwaway cluster of
`make cluster` (environment deploy/cluster/, deployed through Ansible as `make deploy ENV=cluster`
does), with 1 and then 2 MLflow replicas, beside the same stock server as the Docker target.

The load reaches the MLflow Service's ClusterIP (routed to the node's bridge on this machine, so
kube-proxy spreads the connections over the replicas): a `kubectl port-forward`, which is how
connection.env reaches the cluster, holds one pod and would measure one replica whatever the count.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence

import yaml
from mlopskit.environments import REPO_ROOT, check_environment, read_connection
from mlopskit.k8s_tools import find_tool

from bench.docker_deploy import playbook
from bench.report import Point, Row
from bench.tracking import Series, points, rows
from bench.tracking_throughput import pick_person

AREA = "kubernetes"
ENV = "cluster"
PROFILE = "kubernetes"
REPLICAS = (1, 2)


def _label(replicas: int) -> str:
    return f"Kubernetes, {replicas} MLflow replica{'s' if replicas > 1 else ''}"


def not_run(stock: Sequence[Point], why: str) -> list[Row]:
    return rows(stock, [Series(_label(n), None, why) for n in REPLICAS], AREA)


def _service_uri(kubeconfig: str, namespace: str) -> str:
    kubectl = str(find_tool("kubectl"))
    out = subprocess.run(
        [kubectl, "--kubeconfig", kubeconfig, "-n", namespace, "get", "service",
         "-l", "app.kubernetes.io/component=mlflow", "-o", "json"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    services = [
        s for s in json.loads(out)["items"] if s["spec"].get("clusterIP") not in (None, "None")
    ]
    if len(services) != 1:
        raise RuntimeError(
            f"expected one MLflow Service in namespace {namespace}, found {len(services)}"
        )
    spec = services[0]["spec"]
    return f"http://{spec['clusterIP']}:{spec['ports'][0]['port']}"


def run(
    stock: Sequence[Point], clients: Sequence[int], seconds: float
) -> tuple[list[Row], dict[str, Sequence[Point]]]:
    """The rows, and the measured series by label (for the plot)."""
    from mlopskit.cluster import cli as cluster

    running = cluster.running_profile()
    if running not in (None, PROFILE):
        return not_run(stock, f"not run (the cluster runs profile {running})"), {}
    print(f"kubernetes: cluster ({'running' if running else 'starting it'})")
    cluster.up(PROFILE)
    env = check_environment(ENV)
    person = pick_person(env, "")
    settings = yaml.safe_load((env.deploy_dir / "settings.yml").read_text())
    series = []
    try:
        for replicas in REPLICAS:
            # The ClusterIP is a private address MLflow must accept in the Host header.
            values = {"mlflow": {"replicaCount": replicas, "allowPrivateIPHosts": True}}
            print(f"kubernetes: deploying {ENV} with {replicas} MLflow replica(s)")
            extra = json.dumps({"mlops_kubernetes_values": values})
            played = playbook(env.deploy_dir, "deploy.yml", "-e", extra, env_name=ENV)
            print(f"  deployed in {played.seconds:.0f} s")
            connection = dict(read_connection(env, person))
            connection["MLFLOW_TRACKING_URI"] = _service_uri(
                str(REPO_ROOT / settings["mlops_kubernetes_kubeconfig"]),
                settings["mlops_kubernetes_namespace"],
            )
            series.append(Series(_label(replicas), points(connection, clients, seconds)))
    finally:
        if running is None:
            print("kubernetes: taking the cluster down again (the bench started it)")
            cluster.down()
        else:
            print(f"kubernetes: redeploying {ENV} with its own settings")
            playbook(env.deploy_dir, "deploy.yml", env_name=ENV)
    return rows(stock, series, AREA), {s.label: s.points for s in series if s.points}
