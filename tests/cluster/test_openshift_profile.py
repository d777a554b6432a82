"""OpenShift mode on `make cluster PROFILE=openshift`, deployed by a project admin (an `admin`
RoleBinding in project mlops, no cluster rights: cluster-admin could use every policy). In
order: cold deploy (restricted-v2 assigns UIDs, a LoadBalancer Service without any load
balancer), an unchanged second deploy, smoke, `helm test`, the Route host when the apps domain
may not be read, what the policy refuses, destroy, redeploy, purge."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from mlopskit.cluster.config import PROJECT_ADMIN_KUBECONFIG as PROJECT_ADMIN

from tests.cluster.cluster_support import Env, check_persistence, health
from tests.e2e.e2e_support import REPO_ROOT, ansible_playbook, make, recap_changed

ENV = Env(name="cluster-openshift", namespace="mlops", release="mlops", kubeconfig=PROJECT_ADMIN)
ADMIN = Env(name="cluster-openshift", namespace="mlops", release="mlops")
UID_RANGE = range(1000690000, 1000700000)
PROFILE_FILE = Path("/var/lib/mlops-kit/cluster/profile")


def purge() -> None:
    result = make("destroy", ENV=ENV.name, PURGE="1", YES="1")
    assert result.returncode == 0, result.explain()


@pytest.fixture(scope="module", autouse=True)
def fresh_release() -> Iterator[None]:
    profile = PROFILE_FILE.read_text().strip() if PROFILE_FILE.exists() else ""
    if profile != "openshift" or not PROJECT_ADMIN.is_file():
        pytest.fail(
            "the cluster does not run the OpenShift profile: make cluster PROFILE=openshift"
        )
    purge()
    yield
    ENV.save_timings()
    purge()


def test_project_admin_has_no_cluster_rights():
    for verb, resource in (("create", "namespaces"), ("get", "ingresses.config.openshift.io")):
        answer = ENV.kubectl("auth", "can-i", verb, resource, check=False).stdout.strip()
        assert answer == "no", f"the project admin may {verb} {resource}"
    may_create_pods = ENV.kubectl("auth", "can-i", "create", "pods", "-n", ENV.namespace)
    assert may_create_pods.stdout.strip() == "yes"


def test_cold_deploy_as_project_admin():
    result = make("deploy", ENV=ENV.name)
    assert result.returncode == 0, result.explain()
    ENV.timings["cold deploy"] = result.seconds
    assert health(ENV.tracking_uri()) == 200
    (route,) = ENV.get("routes.route.openshift.io")
    assert route["spec"]["host"] == "mlflow-mlops.apps.cluster.mlops.test"
    (sftp,) = [s for s in ENV.get("svc") if s["spec"]["type"] == "LoadBalancer"]
    assert not sftp.get("status", {}).get("loadBalancer", {}).get("ingress"), (
        "this cluster has no load balancer: the deploy must not have waited for one"
    )


def test_pods_run_with_assigned_ids():
    pods = [p for p in ENV.get("pods") if p["status"]["phase"] == "Running"]
    assert len(pods) == 3, [p["metadata"]["name"] for p in pods]
    for pod in pods:
        name = pod["metadata"]["name"]
        assert pod["metadata"]["annotations"].get("kubernetes.io/psp") == "restricted-v2", name
        container = pod["spec"]["containers"][0]["name"]
        ids = ENV.kubectl("exec", "-n", ENV.namespace, name, "-c", container, "--", "id").stdout
        fields = dict(part.split("=", 1) for part in ids.split())
        uid, gid = int(fields["uid"].split("(")[0]), int(fields["gid"].split("(")[0])
        assert uid in UID_RANGE, f"{name}: {ids}"
        assert gid == 0, f"{name}: {ids}"


def test_second_deploy_changes_nothing():
    result = make("deploy", ENV=ENV.name)
    assert result.returncode == 0, result.explain()
    ENV.timings["warm deploy"] = result.seconds
    assert recap_changed(result.output) == {"localhost": 0}, result.explain()


def test_smoke_and_helm_test():
    result = make("smoke", ENV=ENV.name)
    ENV.timings["smoke"] = result.seconds
    assert result.returncode == 0, result.explain()
    tested = ENV.helm("test", ENV.release, "--timeout", "5m")
    assert tested.returncode == 0, tested.explain()


def test_route_host_needs_naming_when_the_domain_is_unreadable():
    deploy_dir = REPO_ROOT / "deploy" / ENV.name
    result = ansible_playbook(
        "deploy.yml", deploy_dir / "inventory.yml", deploy_dir / "settings.yml", ENV.name,
        "-e", '{"mlops_kubernetes_values": {"mlflow": {"route": {"host": ""}}}}',
    )  # fmt: skip
    assert result.returncode != 0
    assert "mlflow.route.host is required" in result.output, result.explain()
    assert "forbidden" not in result.output.lower(), result.explain()


@pytest.mark.parametrize(
    ("security", "refused"),
    [
        ({"runAsUser": 0}, "runAsUser"),
        ({"runAsUser": 1000}, "runAsUser"),
        ({"privileged": True}, "privileged"),
    ],
)
def test_policy_refuses_what_restricted_v2_refuses(tmp_path, security, refused):
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "psp-probe", "namespace": ENV.namespace},
        "spec": {
            "containers": [
                {
                    "name": "probe",
                    "image": "mlops-kit/cluster-pause:3.4",
                    "securityContext": security,
                }
            ]
        },
    }
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(yaml.safe_dump(pod))
    result = ENV.kubectl("create", "--dry-run=server", "-f", str(manifest), check=False)
    assert result.returncode != 0, f"{security} was admitted"
    assert refused in result.stderr, result.stderr


def test_destroy_keeps_data_and_redeploy_finds_it():
    claims = ENV.names("pvc")
    assert make("destroy", ENV=ENV.name).returncode == 0
    assert ENV.names("pvc") == claims
    assert ENV.names("pods") == []
    result = make("deploy", ENV=ENV.name)
    assert result.returncode == 0, result.explain()
    ENV.timings["deploy after destroy"] = result.seconds
    persisted = check_persistence(ENV)
    assert persisted.returncode == 0, persisted.explain()


def test_purge_removes_everything():
    purge()
    assert ENV.names("pvc") == []
    assert ENV.names("pods") == []
    assert ENV.names("secrets", "app.kubernetes.io/managed-by=Helm") == []
    released = json.loads(ADMIN.kubectl("get", "pv", "-o", "json").stdout)["items"]
    assert all(pv["status"]["phase"] != "Bound" or pv["spec"]["claimRef"]["namespace"] != "mlops"
               for pv in released)  # fmt: skip
