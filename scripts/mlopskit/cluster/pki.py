"""Certificates and kubeconfigs of the throwaway cluster (openssl; keys stay in PKI_DIR, 0600).

One CA signs: the API server's serving certificate, an admin client (group system:masters) that
the control plane, kube-proxy and the DNS feeder use, the kubelet's node client, and any extra
user (the OpenShift profile's project admin). The service-account key pair signs tokens.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import yaml

from ..shell import run
from . import config

DAYS = "30"
API_SANS = (
    f"IP:{config.NODE_IP}",
    f"IP:{config.API_SERVICE_IP}",
    "IP:127.0.0.1",
    "DNS:kubernetes",
    "DNS:kubernetes.default",
    "DNS:kubernetes.default.svc",
    f"DNS:kubernetes.default.svc.{config.CLUSTER_DOMAIN}",
)


def _openssl(*args: str) -> None:
    run(["openssl", *args], capture=True, quiet=True)


def _key(path: Path) -> None:
    if not path.exists():
        old = os.umask(0o077)
        try:
            _openssl("genrsa", "-out", str(path), "2048")
        finally:
            os.umask(old)


def ca() -> tuple[Path, Path]:
    crt, key = config.PKI_DIR / "ca.crt", config.PKI_DIR / "ca.key"
    if not crt.exists():
        _key(key)
        _openssl(
            "req", "-x509", "-new", "-key", str(key), "-out", str(crt), "-days", DAYS,
            "-subj", "/CN=mlops-kit-cluster-ca",
        )  # fmt: skip
    return crt, key


def issue(name: str, subject: str, *, sans: tuple[str, ...] = (), server: bool = False) -> Path:
    """Sign PKI_DIR/<name>.crt for PKI_DIR/<name>.key (made once); return the .crt path."""
    ca_crt, ca_key = ca()
    crt, key, csr = (config.PKI_DIR / f"{name}.{ext}" for ext in ("crt", "key", "csr"))
    if crt.exists():
        return crt
    _key(key)
    _openssl("req", "-new", "-key", str(key), "-out", str(csr), "-subj", subject)
    ext = config.PKI_DIR / f"{name}.ext"
    usage = "serverAuth" if server else "clientAuth"
    lines = ["basicConstraints=CA:FALSE", "keyUsage=digitalSignature,keyEncipherment"]
    lines.append(f"extendedKeyUsage={usage}")
    if sans:
        lines.append("subjectAltName=" + ",".join(sans))
    ext.write_text("\n".join(lines) + "\n")
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
        "-CAcreateserial", "-out", str(crt), "-days", DAYS, "-extfile", str(ext),
    )  # fmt: skip
    csr.unlink()
    return crt


def service_account_keys() -> tuple[Path, Path]:
    key, pub = config.PKI_DIR / "sa.key", config.PKI_DIR / "sa.pub"
    _key(key)
    if not pub.exists():
        _openssl("rsa", "-in", str(key), "-pubout", "-out", str(pub))
    return key, pub


def kubeconfig(name: str, user: str) -> dict[str, object]:
    """A kubeconfig for the client certificate PKI_DIR/<name>.crt, certificates embedded."""

    def b64(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    ca_crt, _ = ca()
    cluster = "mlops-kit-cluster"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster,
                "cluster": {"server": config.API_URL, "certificate-authority-data": b64(ca_crt)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": b64(config.PKI_DIR / f"{name}.crt"),
                    "client-key-data": b64(config.PKI_DIR / f"{name}.key"),
                },
            }
        ],
        "contexts": [{"name": f"{user}@{cluster}", "context": {"cluster": cluster, "user": user}}],
        "current-context": f"{user}@{cluster}",
    }


def write_kubeconfig(path: Path, name: str, user: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    old = os.umask(0o077)
    try:
        path.write_text(yaml.safe_dump(kubeconfig(name, user), sort_keys=False))
    finally:
        os.umask(old)
    path.chmod(0o600)
    return path


def ensure() -> None:
    """Every certificate and kubeconfig the node needs."""
    config.PKI_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
    issue("apiserver", "/CN=kube-apiserver", sans=API_SANS, server=True)
    issue("admin", "/O=system:masters/CN=mlops-kit-admin")
    issue("kubelet", f"/O=system:nodes/CN=system:node:{config.NODE_NAME}")
    service_account_keys()
    write_kubeconfig(config.ADMIN_KUBECONFIG, "admin", "mlops-kit-admin")
    write_kubeconfig(config.STATE_DIR / "kubelet.kubeconfig", "kubelet", config.NODE_NAME)
