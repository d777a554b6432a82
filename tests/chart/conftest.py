"""Fixtures of the chart tests: helm from PATH or the pinned wheel, cached renders."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from chartlib import MONITORING_API, OPENSHIFT_API, Rendered, helm_template
from mlopskit.k8s_tools import find_tool

# A syntactically valid public key (public material; it authorizes nothing anywhere).
ED25519_PUBLIC = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
# Real public keys (ssh-keygen), one per person of the tests; their private halves were discarded.
ALICE_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA7jr+Y3ixARDBRbdOLuNrN6nHmAeFoCz871jeR275X6 alice"
BOB_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO4WawY5K0CvRazXlL07BDL1EnCH7gtQd0U+Fg40ji/a bob"
CAROL_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOO7lAgAbLvvFVEgEw3/YZjN6TlXjNUCABeMdOBbgLAA carol"
# alice edits and writes DVC, bob reads both, carol administers MLflow and has no DVC access,
# dave reads MLflow with his own password Secret and no key.
PEOPLE: list[dict[str, str]] = [
    {"name": "alice", "mlflow": "editor", "dvc": "write", "publicKey": ALICE_KEY},
    {"name": "bob", "mlflow": "reader", "dvc": "read", "publicKey": BOB_KEY},
    {"name": "carol", "mlflow": "admin", "dvc": "none", "publicKey": CAROL_KEY},
    {"name": "dave", "mlflow": "reader", "existingSecret": "dave-mlflow-password"},
]  # fmt: skip
# The matrix of the issue: each case is (values, extra helm arguments).
EXISTING_SECRETS: dict[str, Any] = {
    "mlflow": {
        "auth": {"existingSecret": "team-mlflow-auth"},
        "sftpClientKey": {"existingSecret": "team-mlflow-sftp-key"},
        "metrics": {"existingSecret": "team-mlflow-metrics"},
    },
    "postgresql": {
        "auth": {"existingSecret": "team-postgresql"},
        "tls": {"existingSecret": "team-postgresql-tls"},
    },
    "sftp": {"hostKeys": {"existingSecret": "team-sftp-host-keys"}},
}
MATRIX: dict[str, tuple[dict[str, Any], list[str]]] = {
    "defaults": ({}, []),
    "people": (
        {"people": PEOPLE, "mlflow": {"metrics": {"serviceMonitor": {"enabled": True}}}},
        MONITORING_API,
    ),
    "openshift": ({"mlflow": {"route": {"host": "mlflow.apps.example.com"}}}, OPENSHIFT_API),
    "external-db": (
        {
            "postgresql": {"enabled": False},
            "externalDatabase": {
                "host": "db.example.com",
                "port": 6432,
                "database": "tracking",
                "authDatabase": "tracking_auth",
                "user": "mlflow_app",
                "sslmode": "verify-full",
                "tls": {"existingSecret": "external-db-ca", "caKey": "root.pem"},
                "readReplica": {"host": "db-ro.example.com", "port": 6433},
                "existingSecret": "external-db",
                "existingSecretPasswordKey": "db-password",
            },
        },
        [],
    ),
    "external-sftp": (
        {
            "sftp": {"enabled": False},
            "externalSftp": {
                "host": "files.example.com",
                "port": 22,
                "username": "mlflow",
                "artifactsPath": "/srv/mlflow",
                "dvcPath": "/srv/dvc",
                "knownHosts": f"files.example.com {ED25519_PUBLIC}",
            },
        },
        [],
    ),
    "auth-off": ({"mlflow": {"auth": {"enabled": False}}}, []),
    "hpa": (
        {"mlflow": {"autoscaling": {"enabled": True, "targetMemoryUtilizationPercentage": 80}}},
        [],
    ),
    "existing-secrets": (EXISTING_SECRETS, []),
    # HTTPS on MLflow itself and artifacts on an S3 store: settings both targets have.
    "tls-s3": (
        {
            "mlflow": {
                "tls": {"existingSecret": "mlflow-tls"},
                "artifacts": {
                    "backend": "s3",
                    "s3": {
                        "endpointUrl": "https://rgw.example.com",
                        "bucket": "team-artifacts",
                        "existingSecret": "mlflow-s3-keys",
                        "caSecret": "rgw-ca",
                    },
                },
            }
        },
        [],
    ),
    # Not in the issue's list, but the Docker target has this mode: the drift check needs it.
    "direct-artifacts": (
        {
            "people": PEOPLE,
            "mlflow": {
                "serveArtifacts": False,
                "ingress": {
                    "enabled": True,
                    "host": "mlflow.example.com",
                    "tls": {"enabled": True},
                },
                "metrics": {"serviceMonitor": {"enabled": True}},
            },
            "networkPolicy": {"sftpClientCIDRs": ["10.20.0.0/16"]},
            "sftp": {"service": {"type": "LoadBalancer"}},
        },
        MONITORING_API,
    ),
}


@pytest.fixture(scope="session")
def helm() -> Path:
    return find_tool("helm")


@pytest.fixture(scope="session")
def matrix_renders(helm: Path) -> dict[str, Rendered]:
    """Every matrix case rendered once; helm's RSA key generation is slow, so in parallel."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {
            case: pool.submit(helm_template, helm, values, args)
            for case, (values, args) in MATRIX.items()
        }
        return {case: future.result() for case, future in futures.items()}


@pytest.fixture(params=sorted(MATRIX))
def case(request: pytest.FixtureRequest, matrix_renders: dict[str, Rendered]) -> Rendered:
    rendered = matrix_renders[request.param]
    rendered.extra["case"] = request.param
    return rendered
