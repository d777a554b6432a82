"""The NetworkPolicies: who may reach MLflow, PostgreSQL and SFTP, and where each may connect to
when egress is restricted. The cluster of `make cluster` does not enforce policies, so these
rendered objects are the check (docs/kubernetes.md, "NetworkPolicies")."""

from __future__ import annotations

import copy
import ipaddress
import urllib.parse
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from chartlib import (
    OPENSHIFT_API,
    Rendered,
    RenderError,
    env_map,
    helm_template,
    merged,
    migration_job,
)
from conftest import ED25519_PUBLIC, EXISTING_SECRETS
from contract import parse_contract
from test_chart_render import KUBERNETES_VERSION
from test_chart_values import names_the_problem

# Nothing random to render: the variants below render in a fraction of a second.
FAST: dict[str, Any] = {
    **copy.deepcopy(EXISTING_SECRETS),
    "generateSecrets": False,
    "tests": {"accounts": False},
}
EXTERNAL_DB = {
    "postgresql": {"enabled": False},
    "externalDatabase": {"host": "db.example.com", "port": 6432, "existingSecret": "external-db"},
}
EXTERNAL_SFTP = {
    "sftp": {"enabled": False},
    "externalSftp": {
        "host": "files.example.com",
        "port": 22,
        "knownHosts": f"files {ED25519_PUBLIC}",
    },
}
EGRESS_ON = {"networkPolicy": {"egress": {"enabled": True}}}
CLOSED = {"networkPolicy": {"mlflow": {"allowExternal": False}}}
DB_PEER = {"ipBlock": {"cidr": "10.0.5.10/32"}}
SFTP_PEER = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "files"}}}
DNS_PORTS = [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]


def render(helm: Path, *layers: dict[str, Any], args: list[str] | None = None) -> Rendered:
    return helm_template(helm, merged(FAST, *layers), args or [])


def policy(rendered: Rendered, component: str) -> dict[str, Any]:
    return rendered.get("NetworkPolicy", f"-{component}")


def pod_labels(rendered: Rendered, component: str) -> dict[str, str]:
    """The labels of a component's pods (the helm test pod is component smoke-test)."""
    for doc in rendered.docs:
        labels = (doc["metadata"].get("labels") or {}) if doc["kind"] == "Pod" else {}
        if doc["kind"] in {"Deployment", "StatefulSet"}:
            labels = doc["spec"]["template"]["metadata"]["labels"]
        if labels.get("app.kubernetes.io/component") == component:
            return labels
    raise KeyError(f"no pods of component {component}")


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return set((selector.get("matchLabels") or {}).items()) <= set(labels.items())


def container_port(rendered: Rendered, component: str, name: str) -> int:
    for doc in rendered.docs:
        if doc["kind"] not in {"Deployment", "StatefulSet"}:
            continue
        spec = doc["spec"]["template"]["spec"]
        if (
            doc["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
            != component
        ):
            continue
        for container in spec["containers"]:
            for port in container.get("ports") or []:
                if port["name"] == name:
                    return port["containerPort"]
    raise KeyError(f"{component} has no container port {name}")


# ---------------------------------------------------------------- ingress


def test_defaults_keep_every_client_of_mlflow_and_restrict_no_egress(
    matrix_renders: dict[str, Rendered],
) -> None:
    rendered = matrix_renders["defaults"]
    assert rendered.names("NetworkPolicy") == {
        "smoke-mlops-kit-postgresql", "smoke-mlops-kit-sftp", "smoke-mlops-kit-mlflow",
        "smoke-mlops-kit-migrate",
    }  # fmt: skip
    mlflow = policy(rendered, "mlflow")["spec"]
    assert selects(mlflow["podSelector"], pod_labels(rendered, "mlflow"))
    # allowExternal: the HTTP port from anywhere (NodePort, port-forward, other namespaces), and
    # nothing else: the pod has no other port to reach.
    assert mlflow["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]
    for doc in rendered.of_kind("NetworkPolicy"):
        assert doc["spec"]["policyTypes"] == ["Ingress"], doc["metadata"]["name"]
        assert "egress" not in doc["spec"]


def test_every_case_has_an_mlflow_policy_on_its_named_port(case: Rendered) -> None:
    rendered = case
    mlflow = policy(rendered, "mlflow")["spec"]
    assert selects(mlflow["podSelector"], pod_labels(rendered, "mlflow"))
    assert container_port(rendered, "mlflow", "http") == parse_contract()["mlflow"].port
    for rule in mlflow["ingress"]:
        assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]


def test_closed_mlflow_admits_the_controller_its_clients_the_test_pod_and_monitoring(
    helm: Path,
) -> None:
    rendered = render(helm, CLOSED)
    clients, monitoring = policy(rendered, "mlflow")["spec"]["ingress"]
    peers = clients["from"]
    assert {"podSelector": {"matchLabels": {"smoke-mlops-kit-mlflow-client": "true"}}} in peers
    test_pod = [p for p in peers if "podSelector" in p and "namespaceSelector" not in p][1]
    assert selects(test_pod["podSelector"], pod_labels(rendered, "smoke-test"))
    assert not selects(test_pod["podSelector"], pod_labels(rendered, "sftp"))
    assert {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}},
        "podSelector": {"matchLabels": {}},
    } in peers
    assert not [p for p in peers if "ipBlock" in p], "no address is open by default"
    assert not [p for p in peers if p.get("namespaceSelector") == {}], "never every namespace"
    assert monitoring["from"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
            "podSelector": {"matchLabels": {}},
        }
    ]
    assert clients["ports"] == monitoring["ports"] == [{"port": "http", "protocol": "TCP"}]


def test_closed_mlflow_follows_the_configured_selectors(helm: Path) -> None:
    rendered = render(
        helm,
        CLOSED,
        {
            "networkPolicy": {
                "mlflow": {
                    "ingressControllerNamespace": "team-ingress",
                    "ingressControllerPodLabels": {"app": "router"},
                    "monitoringNamespace": "",
                    "clientCIDRs": ["192.0.2.0/24"],
                }
            }
        },
    )
    (clients,) = policy(rendered, "mlflow")["spec"]["ingress"]
    assert {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "team-ingress"}},
        "podSelector": {"matchLabels": {"app": "router"}},
    } in clients["from"]
    assert {"ipBlock": {"cidr": "192.0.2.0/24"}} in clients["from"]
    # Empty admits no namespace at all (an empty selector would admit every one).
    no_monitoring = render(helm, CLOSED, {"networkPolicy": {"mlflow": {"monitoringNamespace": ""}}})
    assert len(policy(no_monitoring, "mlflow")["spec"]["ingress"]) == 1
    no_metrics = render(helm, CLOSED, {"mlflow": {"metrics": {"enabled": False}}})
    assert len(policy(no_metrics, "mlflow")["spec"]["ingress"]) == 1


def test_closed_mlflow_on_openshift_admits_the_router_and_cluster_monitoring(helm: Path) -> None:
    rendered = render(
        helm, CLOSED, {"mlflow": {"route": {"host": "m.apps.example.com"}}}, args=OPENSHIFT_API
    )
    clients, monitoring = policy(rendered, "mlflow")["spec"]["ingress"]
    router = {
        "namespaceSelector": {"matchLabels": {"network.openshift.io/policy-group": "ingress"}}
    }
    assert router in clients["from"]
    assert {
        "namespaceSelector": {"matchLabels": {"network.openshift.io/policy-group": "monitoring"}}
    } in monitoring["from"]


@pytest.mark.parametrize("service_type", ["NodePort", "LoadBalancer"])
def test_closed_mlflow_behind_an_exposed_service_needs_client_cidrs(
    helm: Path, service_type: str
) -> None:
    exposed = {"mlflow": {"service": {"type": service_type}}}
    with pytest.raises(RenderError, match=r"networkPolicy\.mlflow\.clientCIDRs") as failure:
        render(helm, CLOSED, exposed)
    assert "networkPolicy.mlflow.allowExternal: true" in str(failure.value)
    # allowExternal (the default) keeps such a Service reachable without any CIDR.
    open_rule = policy(render(helm, exposed), "mlflow")["spec"]["ingress"]
    assert open_rule == [{"ports": [{"port": "http", "protocol": "TCP"}]}]
    with_cidrs = merged(CLOSED, {"networkPolicy": {"mlflow": {"clientCIDRs": ["10.30.0.0/16"]}}})
    (rule, _) = policy(render(helm, with_cidrs, exposed), "mlflow")["spec"]["ingress"]
    assert {"ipBlock": {"cidr": "10.30.0.0/16"}} in rule["from"]


def test_extra_ingress_and_egress_are_appended_with_tpl(helm: Path) -> None:
    extra = {
        "networkPolicy": {
            "egress": {
                "enabled": True,
                "extraEgress": [
                    {
                        "to": [{"ipBlock": {"cidr": "10.0.7.0/24"}}],
                        "ports": [{"port": 443, "protocol": "TCP"}],
                    }
                ],
            },
            "mlflow": {
                "extraIngress": [
                    {
                        "from": [
                            {
                                "podSelector": {
                                    "matchLabels": {"app": "{{ .Release.Name }}-notebooks"}
                                }
                            }
                        ],
                        "ports": [{"port": "http", "protocol": "TCP"}],
                    }
                ]
            },
        }
    }
    spec = policy(render(helm, extra), "mlflow")["spec"]
    assert spec["ingress"][-1]["from"] == [
        {"podSelector": {"matchLabels": {"app": "smoke-notebooks"}}}
    ]
    assert spec["egress"][-1] == extra["networkPolicy"]["egress"]["extraEgress"][0]


# ---------------------------------------------------------------- egress


def test_egress_gives_postgresql_and_sftp_dns_only(helm: Path) -> None:
    rendered = render(helm, EGRESS_ON)
    for component in ("postgresql", "sftp"):
        spec = policy(rendered, component)["spec"]
        assert spec["policyTypes"] == ["Ingress", "Egress"]
        assert spec["egress"] == [{"ports": DNS_PORTS}], component


def test_egress_on_openshift_also_opens_the_dns_pods_port(helm: Path) -> None:
    rendered = render(
        helm, EGRESS_ON, {"mlflow": {"route": {"host": "m.apps.example.com"}}}, args=OPENSHIFT_API
    )
    dns = policy(rendered, "postgresql")["spec"]["egress"][0]["ports"]
    assert {"port": 5353, "protocol": "UDP"} in dns
    assert {"port": 5353, "protocol": "TCP"} in dns


def mlflow_destinations(rendered: Rendered) -> list[tuple[str, str, int]]:
    """(what, host, port) MLflow connects to, read from its container's env."""
    env = env_map(
        rendered.get("Deployment", "-mlflow")["spec"]["template"]["spec"]["containers"][0]
    )
    artifacts = urllib.parse.urlsplit(
        env.get("MLFLOW_ARTIFACTS_DESTINATION") or env["MLFLOW_DEFAULT_ARTIFACT_ROOT"]
    )
    assert artifacts.scheme == "sftp"
    assert artifacts.hostname
    assert artifacts.port
    destinations = [
        ("database", env["MLFLOW_DB_HOST"], int(env["MLFLOW_DB_PORT"])),
        ("sftp", artifacts.hostname, artifacts.port),
    ]
    if "MLFLOW_DB_READ_REPLICA_HOST" in env:
        replica = env["MLFLOW_DB_READ_REPLICA_HOST"], int(env["MLFLOW_DB_READ_REPLICA_PORT"])
        destinations.append(("replica", *replica))
    return destinations


def allowed_peers(spec: dict[str, Any], port: int) -> list[dict[str, Any]]:
    """The peers MLflow's egress rules allow on TCP port ``port``; [{}] when any destination."""
    peers: list[dict[str, Any]] = []
    for rule in spec["egress"]:
        ports = rule.get("ports")
        if ports is None or {"port": port, "protocol": "TCP"} in ports:
            peers += rule.get("to") or [{}]
    return peers


def service_behind(rendered: Rendered, host: str, port: int) -> tuple[dict[str, str], int] | None:
    """For a host that is one of the release's Services: its pods' selector and the container
    port its ``port`` leads to (what a policy sees, after the Service's translation)."""
    for service in rendered.of_kind("Service"):
        if service["metadata"]["name"] != host or service["spec"].get("clusterIP") == "None":
            continue
        (entry,) = [p for p in service["spec"]["ports"] if p["port"] == port]
        component = service["spec"]["selector"]["app.kubernetes.io/component"]
        target = entry["targetPort"]
        if isinstance(target, str):
            target = container_port(rendered, component, target)
        return service["spec"]["selector"], target
    return None


EGRESS_CASES = {
    "bundled": [EGRESS_ON],
    "bundled, SFTP Service on port 22": [EGRESS_ON, {"sftp": {"service": {"port": 22}}}],
    "direct artifacts": [EGRESS_ON, {"mlflow": {"serveArtifacts": False}}],
    "external by peers": [
        EGRESS_ON,
        EXTERNAL_DB,
        EXTERNAL_SFTP,
        {
            "networkPolicy": {
                "egress": {"externalDatabaseTo": [DB_PEER], "externalSftpTo": [SFTP_PEER]}
            }
        },
    ],
    "external by address": [
        EGRESS_ON,
        merged(EXTERNAL_DB, {"externalDatabase": {"host": "fd00::10"}}),
        merged(EXTERNAL_SFTP, {"externalSftp": {"host": "10.0.6.20", "port": 2022}}),
    ],
    "external with a read replica": [
        EGRESS_ON,
        merged(EXTERNAL_DB, {"externalDatabase": {"host": "10.0.5.10"}}),
        {"externalDatabase": {"readReplica": {"host": "db-ro.example.com", "port": 6433}}},
        {"networkPolicy": {"egress": {"readReplicaTo": [{"ipBlock": {"cidr": "10.0.5.11/32"}}]}}},
    ],
}
CONFIGURED_PEERS = {
    "database": "externalDatabaseTo",
    "sftp": "externalSftpTo",
    "replica": "readReplicaTo",
}


@pytest.mark.parametrize("layers", EGRESS_CASES.values(), ids=EGRESS_CASES.keys())
def test_mlflow_egress_allows_every_port_it_talks_to(helm: Path, layers: list[dict]) -> None:
    """Where MLflow's env points (the contract's settings), its egress policy lets it go: the
    bundled servers on the contract's listen ports, reached through their Services, or the
    external ones on their ports. A port changed in the contract or a Service breaks this."""
    rendered = render(helm, *layers)
    values = merged(*layers)
    contract = parse_contract()
    spec = policy(rendered, "mlflow")["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert {"ports": DNS_PORTS} in spec["egress"]
    for what, host, port in mlflow_destinations(rendered):
        behind = service_behind(rendered, host, port)
        if behind is not None:
            selector, target = behind
            component = selector["app.kubernetes.io/component"]
            assert target == contract[component].port, f"{what}: Service leads to {target}"
            peers = allowed_peers(spec, target)
            assert any(
                "podSelector" in peer
                and selects(peer["podSelector"], pod_labels(rendered, component))
                for peer in peers
            ), f"{what}: port {target} of the {component} pods is not allowed: {spec['egress']}"
            continue
        peers = allowed_peers(spec, port)
        configured = values["networkPolicy"]["egress"].get(CONFIGURED_PEERS[what]) or []
        if configured:
            assert all(peer in peers for peer in configured), f"{what}: {peers}"
        else:
            address = ipaddress.ip_address(host.strip("[]"))
            cidr = f"{address}/{address.max_prefixlen}"
            assert {"ipBlock": {"cidr": cidr}} in peers, f"{what} {host}:{port}: {peers}"
    # Nothing else: DNS and one rule per destination.
    assert len(spec["egress"]) == 1 + len(mlflow_destinations(rendered))
    assert [{}] not in [rule.get("to") for rule in spec["egress"]]


@pytest.mark.parametrize("layers", EGRESS_CASES.values(), ids=EGRESS_CASES.keys())
def test_the_migration_job_reaches_the_databases_only(helm: Path, layers: list[dict]) -> None:
    """The migration Job's pods: nothing gets in; out, DNS and MLflow's database rules (the
    ones checked above), not the artifact store."""
    rendered = render(helm, *layers)
    mlflow = policy(rendered, "mlflow")["spec"]
    migrate = policy(rendered, "migrate")["spec"]
    job_labels = migration_job(rendered)["spec"]["template"]["metadata"]["labels"]
    assert selects(migrate["podSelector"], job_labels)
    assert not selects(migrate["podSelector"], pod_labels(rendered, "mlflow"))
    assert migrate["policyTypes"] == ["Ingress", "Egress"]
    assert migrate["ingress"] == []
    assert migrate["egress"] == mlflow["egress"][:-1], "all but the artifact store's rule"
    assert mlflow["egress"][-1] not in migrate["egress"]


def test_the_egress_check_sees_a_wrong_port(helm: Path) -> None:
    """The check above fails when the policy names the Service port instead of the pod's."""
    rendered = render(helm, *EGRESS_CASES["bundled, SFTP Service on port 22"])
    spec = policy(rendered, "mlflow")["spec"]
    _, host, port = mlflow_destinations(rendered)[1]
    assert port == 22
    _, target = service_behind(rendered, host, port) or ({}, 0)
    assert target == 2222
    broken = copy.deepcopy(spec)
    for rule in broken["egress"]:
        for entry in rule.get("ports") or []:
            if entry["port"] == target:
                entry["port"] = port
    assert allowed_peers(spec, target)
    assert not allowed_peers(broken, target)


@pytest.mark.parametrize(
    ("layers", "value"),
    [
        ([EXTERNAL_DB], "networkPolicy.egress.externalDatabaseTo"),
        ([EXTERNAL_SFTP], "networkPolicy.egress.externalSftpTo"),
        (
            [
                merged(EXTERNAL_DB, {"externalDatabase": {"host": "10.0.5.10"}}),
                {"externalDatabase": {"readReplica": {"host": "db-ro.example.com"}}},
            ],
            "networkPolicy.egress.readReplicaTo",
        ),
    ],
    ids=["database", "sftp", "read replica"],
)
def test_egress_to_an_external_server_known_by_name_asks_for_its_peers(
    helm: Path, layers: list[dict], value: str
) -> None:
    with pytest.raises(RenderError) as failure:
        render(helm, EGRESS_ON, *layers)
    assert value in str(failure.value)
    assert "is a name" in str(failure.value)
    render(helm, *layers)  # without egress the name is enough, as before


def test_policy_variants_are_valid_kubernetes(helm: Path) -> None:
    variants = [
        render(
            helm, EGRESS_ON, CLOSED, {"networkPolicy": {"mlflow": {"clientCIDRs": ["10.1.0.0/16"]}}}
        ),
        render(helm, *EGRESS_CASES["external by peers"]),
        render(helm, *EGRESS_CASES["external by address"]),
    ]
    for rendered in variants:
        for doc in rendered.of_kind("NetworkPolicy"):
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_network_policies_off_renders_none(helm: Path) -> None:
    rendered = render(helm, EGRESS_ON, {"networkPolicy": {"enabled": False}})
    assert not rendered.of_kind("NetworkPolicy")


# ---------------------------------------------------------------- the schema

BAD_VALUES = [
    (
        {"networkPolicy": {"mlflow": {"allowExternal": "yes"}}},
        "/networkPolicy/mlflow/allowExternal",
    ),
    (
        {"networkPolicy": {"mlflow": {"clientCIDRs": ["office"]}}},
        "/networkPolicy/mlflow/clientCIDRs/0",
    ),
    (
        {"networkPolicy": {"mlflow": {"ingressControllerNamespace": "Ingress NGINX"}}},
        "/networkPolicy/mlflow/ingressControllerNamespace",
    ),
    (
        {"networkPolicy": {"mlflow": {"monitoringPodLabels": {"app": 1}}}},
        "/networkPolicy/mlflow/monitoringPodLabels/app",
    ),
    (
        {"networkPolicy": {"mlflow": {"extraIngress": [{"form": []}]}}},
        "/networkPolicy/mlflow/extraIngress/0",
    ),
    ({"networkPolicy": {"egress": {"enabled": "true"}}}, "/networkPolicy/egress/enabled"),
    (
        {
            "networkPolicy": {
                "egress": {"externalDatabaseTo": [{"ipBlock": {"cidr": "db.example.com"}}]}
            }
        },
        "/networkPolicy/egress/externalDatabaseTo/0",
    ),
    (
        {"networkPolicy": {"egress": {"externalSftpTo": [{}]}}},
        "/networkPolicy/egress/externalSftpTo/0",
    ),
    (
        {"networkPolicy": {"egress": {"extraEgress": [{"to": [], "ports": [{"port": 70000}]}]}}},
        "/networkPolicy/egress/extraEgress/0",
    ),
    ({"networkPolicy": {"egress": {"dns": False}}}, "additional properties 'dns' not allowed"),
]


@pytest.mark.parametrize(("values", "message"), BAD_VALUES, ids=[m for _, m in BAD_VALUES])
def test_schema_rejects_bad_network_policy_values(helm: Path, values: dict, message: str) -> None:
    with pytest.raises(RenderError) as failure:
        render(helm, values)
    assert "values don't meet the specifications of the schema" in str(failure.value)
    assert names_the_problem(str(failure.value), message), str(failure.value)
