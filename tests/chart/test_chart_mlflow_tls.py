"""HTTPS on MLflow itself (mlflow.tls.existingSecret): the chart fills the image's
MLFLOW_TLS_* contract (tested with real clients in tests/images/test_mlflow_https.py), and
everything that reaches MLflow follows it to HTTPS: the probes, the Route (reencrypt), the
Ingress (backend protocol), the ServiceMonitor, `helm test` and NOTES."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from chartlib import (
    MONITORING_API,
    OPENSHIFT_API,
    RELEASE,
    Rendered,
    RenderError,
    env_map,
    helm_template,
    merged,
    migrate_container,
    render_notes,
)

BASE = {"postgresql": {"auth": {"existingSecret": "pg"}}}
TLS = merged(BASE, {"mlflow": {"tls": {"existingSecret": "mlflow-tls"}}})
PROBES = ("startupProbe", "livenessProbe", "readinessProbe")


@pytest.fixture(scope="module")
def tls_render(helm: Path) -> Rendered:
    values = merged(
        TLS,
        {"mlflow": {"ingress": {"enabled": True, "host": "mlflow.example.com"}}},
        {"mlflow": {"metrics": {"serviceMonitor": {"enabled": True}}}},
    )
    return helm_template(helm, values, MONITORING_API)


def server(rendered: Rendered) -> tuple[dict[str, Any], dict[str, Any]]:
    pod = rendered.get("Deployment", "-mlflow")["spec"]["template"]["spec"]
    return pod, pod["containers"][0]


def test_the_server_gets_its_certificate_and_key_as_files(tls_render: Rendered) -> None:
    pod, container = server(tls_render)
    env = env_map(container)
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volume = {v["name"]: v for v in pod["volumes"]}["tls"]["secret"]
    assert mounts["tls"]["readOnly"] is True
    assert volume["secretName"] == "mlflow-tls"
    assert volume["defaultMode"] == 0o440, "the key stays out of other users' reach"
    paths = {item["key"]: item["path"] for item in volume["items"]}
    assert env["MLFLOW_TLS_CERT_FILE"] == f"{mounts['tls']['mountPath']}/{paths['tls.crt']}"
    assert env["MLFLOW_TLS_KEY_FILE"] == f"{mounts['tls']['mountPath']}/{paths['tls.key']}"


def test_the_probes_speak_https(tls_render: Rendered, helm: Path) -> None:
    _, container = server(tls_render)
    assert {container[p]["httpGet"]["scheme"] for p in PROBES} == {"HTTPS"}
    _, plain = server(helm_template(helm, BASE))
    assert {plain[p]["httpGet"]["scheme"] for p in PROBES} == {"HTTP"}
    assert "MLFLOW_TLS_CERT_FILE" not in env_map(plain)


def test_the_ingress_controller_speaks_https_to_mlflow(tls_render: Rendered) -> None:
    annotations = tls_render.get("Ingress", "-mlflow")["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/backend-protocol"] == "HTTPS"
    assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == "0", "defaults kept"


def test_an_own_backend_protocol_annotation_wins(helm: Path) -> None:
    values = merged(
        TLS,
        {
            "mlflow": {
                "ingress": {
                    "enabled": True,
                    "host": "mlflow.example.com",
                    "annotations": {"nginx.ingress.kubernetes.io/backend-protocol": "GRPCS"},
                }
            }
        },
    )
    ingress = helm_template(helm, values).get("Ingress", "-mlflow")
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/backend-protocol"] == "GRPCS"


def test_the_route_reencrypts(helm: Path) -> None:
    ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    values = merged(
        TLS,
        {"openshift": {"enabled": True}},
        {"mlflow": {"route": {"host": "mlflow.apps.example.com", "destinationCACertificate": ca}}},
    )
    tls = helm_template(helm, values, OPENSHIFT_API).get("Route", "-mlflow")["spec"]["tls"]
    assert tls["termination"] == "reencrypt"
    assert tls["destinationCACertificate"] == ca
    plain = merged(BASE, {"openshift": {"enabled": True}}, {"mlflow": {"route": {"host": "h.x"}}})
    route = helm_template(helm, plain, OPENSHIFT_API).get("Route", "-mlflow")
    assert route["spec"]["tls"] == {
        "termination": "edge",
        "insecureEdgeTerminationPolicy": "Redirect",
    }


def test_the_service_monitor_checks_the_certificate(tls_render: Rendered) -> None:
    (endpoint,) = tls_render.get("ServiceMonitor", "-mlflow")["spec"]["endpoints"]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"]["ca"] == {"secret": {"name": "mlflow-tls", "key": "ca.crt"}}
    assert "insecureSkipVerify" not in endpoint["tlsConfig"]
    assert endpoint["tlsConfig"]["serverName"] == f"{RELEASE}-mlops-kit-mlflow.mlops-test.svc"


def test_helm_test_checks_the_server_against_its_ca(tls_render: Rendered) -> None:
    (pod,) = [p for p in tls_render.of_kind("Pod") if p["metadata"]["name"].endswith("smoke-test")]
    container = pod["spec"]["containers"][0]
    env = env_map(container)
    assert env["SMOKE_TRACKING_URI"].startswith("https://")
    mount = {m["name"]: m for m in container["volumeMounts"]}["tls-ca"]["mountPath"]
    assert env["MLFLOW_TRACKING_SERVER_CERT_PATH"] == env["REQUESTS_CA_BUNDLE"] == f"{mount}/ca.crt"
    volume = {v["name"]: v for v in pod["spec"]["volumes"]}["tls-ca"]["secret"]
    assert volume["items"] == [{"key": "ca.crt", "path": "ca.crt"}], "the CA only, not the key"


def test_the_migration_job_gets_no_server_key(tls_render: Rendered) -> None:
    job = migrate_container(tls_render)
    assert "MLFLOW_TLS_KEY_FILE" not in env_map(job)
    assert "tls" not in {m["name"] for m in job["volumeMounts"]}


def test_a_new_certificate_secret_rolls_the_pods(helm: Path) -> None:
    def checksum(secret: str) -> str:
        values = merged(BASE, {"mlflow": {"tls": {"existingSecret": secret}}})
        template = helm_template(helm, values).get("Deployment", "-mlflow")["spec"]["template"]
        return template["metadata"]["annotations"]["checksum/secrets"]

    assert checksum("tls-a") != checksum("tls-b")


def test_notes_name_the_https_address_and_the_ca(helm: Path) -> None:
    notes = render_notes(helm, TLS)
    assert "export MLFLOW_TRACKING_URI=https://localhost:5000" in notes
    assert "MLFLOW_TRACKING_SERVER_CERT_PATH" in notes
    assert f"https://{RELEASE}-mlops-kit-mlflow.mlops-test.svc:5000" in notes


@pytest.mark.parametrize(
    ("tls", "message"),
    [
        ({"existingSecret": "Not_A_Name"}, "existingSecret"),
        ({"existingSecret": "mlflow-tls", "caKey": ""}, "caKey"),
        ({"secretName": "mlflow-tls"}, "secretName"),
    ],
)
def test_values_that_cannot_work_stop_the_render(
    helm: Path, tls: dict[str, str], message: str
) -> None:
    with pytest.raises(RenderError, match=message):
        helm_template(helm, merged(BASE, {"mlflow": {"tls": tls}}))
