"""Objects every cluster gets (DNS Service, default StorageClass and its volumes) and those of
the OpenShift-like profile (a restricted-v2-like PodSecurityPolicy, the Route and cluster Ingress
APIs as CRDs, a project with a project admin who has no cluster rights).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from ..shell import run
from . import config, pki

VOLUME_LABEL = "mlops-kit.cluster/volume"
PROJECT_ADMIN = "project-admin"
# The project the OpenShift profile makes for its project admin (deploy/cluster-openshift).
OPENSHIFT_PROJECT = "mlops"
APPS_DOMAIN = "apps.cluster.mlops.test"


def kubectl_argv() -> list[str]:
    from ..k8s_tools import find_tool

    return [str(find_tool("kubectl")), "--kubeconfig", str(config.ADMIN_KUBECONFIG)]


def apply(documents: list[dict[str, Any]]) -> None:
    text = yaml.safe_dump_all(documents, sort_keys=False)
    run([*kubectl_argv(), "apply", "-f", "-"], input_bytes=text.encode(), capture=True)


def dns_objects() -> list[dict[str, Any]]:
    """A selector-less kube-dns Service whose Endpoints are dnsmasq on the node address."""
    meta = {"name": "kube-dns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}}
    ports = [
        {"name": "dns", "port": 53, "protocol": "UDP"},
        {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
    ]
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            "spec": {"clusterIP": config.DNS_SERVICE_IP, "ports": ports},
        },
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": meta,
            "subsets": [{"addresses": [{"ip": config.NODE_IP}], "ports": ports}],
        },
    ]


def volume_path(index: int) -> Path:
    return config.VOLUMES_DIR / f"pv-{index:02d}"


def storage_objects() -> list[dict[str, Any]]:
    """The default StorageClass and hostPath volumes (group-0 writable, as restricted-v2 needs)."""
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {
                "name": config.STORAGE_CLASS,
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            },
            "provisioner": "kubernetes.io/no-provisioner",
            "reclaimPolicy": "Retain",
            "volumeBindingMode": "Immediate",
        }
    ]
    for index in range(config.VOLUME_COUNT):
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": f"pv-{index:02d}", "labels": {VOLUME_LABEL: "true"}},
                "spec": {
                    "capacity": {"storage": config.VOLUME_SIZE},
                    "accessModes": ["ReadWriteOnce", "ReadWriteMany"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "storageClassName": config.STORAGE_CLASS,
                    "hostPath": {"path": str(volume_path(index)), "type": "Directory"},
                },
            }
        )
    return docs


def make_volume_dirs() -> None:
    for index in range(config.VOLUME_COUNT):
        path = volume_path(index)
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, 0, 0)
        path.chmod(0o770)


def openshift_objects() -> list[dict[str, Any]]:
    uid_range = [{"min": config.OPENSHIFT_UID_MIN, "max": config.OPENSHIFT_UID_MAX}]
    psp = {
        "apiVersion": "policy/v1beta1",
        "kind": "PodSecurityPolicy",
        "metadata": {
            "name": "restricted-v2",
            "annotations": {
                "seccomp.security.alpha.kubernetes.io/allowedProfileNames": "runtime/default",
                "seccomp.security.alpha.kubernetes.io/defaultProfileName": "runtime/default",
            },
        },
        "spec": {
            "privileged": False,
            "allowPrivilegeEscalation": False,
            "defaultAllowPrivilegeEscalation": False,
            "requiredDropCapabilities": ["ALL"],
            "allowedCapabilities": ["NET_BIND_SERVICE"],
            "runAsUser": {"rule": "MustRunAs", "ranges": uid_range},
            "fsGroup": {"rule": "MustRunAs", "ranges": uid_range},
            "supplementalGroups": {"rule": "RunAsAny"},
            "seLinux": {"rule": "RunAsAny"},
            "hostNetwork": False,
            "hostIPC": False,
            "hostPID": False,
            "volumes": [
                "configMap",
                "secret",
                "emptyDir",
                "persistentVolumeClaim",
                "projected",
                "downwardAPI",
            ],
        },
    }
    use = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "psp:restricted-v2"},
        "rules": [
            {
                "apiGroups": ["policy"],
                "resources": ["podsecuritypolicies"],
                "resourceNames": ["restricted-v2"],
                "verbs": ["use"],
            }
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "psp:restricted-v2"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "psp:restricted-v2",
        },
        "subjects": [
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}
            for group in ("system:serviceaccounts", "system:nodes")
        ],
    }
    # As on OpenShift, a project's admin and editors manage its Routes (aggregated roles).
    routes = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {
            "name": "openshift:route-editor",
            "labels": {
                "rbac.authorization.k8s.io/aggregate-to-admin": "true",
                "rbac.authorization.k8s.io/aggregate-to-edit": "true",
            },
        },
        "rules": [
            {
                "apiGroups": ["route.openshift.io"],
                "resources": ["routes", "routes/custom-host", "routes/status"],
                "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
            }
        ],
    }
    return [psp, use, binding, routes, *openshift_crds(), *project_objects()]


def _crd(group: str, plural: str, kind: str, scope: str) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {
            "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": scope,
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def openshift_crds() -> list[dict[str, Any]]:
    return [
        _crd("route.openshift.io", "routes", "Route", "Namespaced"),
        _crd("config.openshift.io", "ingresses", "Ingress", "Cluster"),
    ]


def project_objects() -> list[dict[str, Any]]:
    """The project a cluster admin makes: the namespace and an ``admin`` RoleBinding only."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": OPENSHIFT_PROJECT},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": f"{PROJECT_ADMIN}-admin", "namespace": OPENSHIFT_PROJECT},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "admin",
            },
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": PROJECT_ADMIN}
            ],
        },
    ]


def cluster_ingress() -> dict[str, Any]:
    return {
        "apiVersion": "config.openshift.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "cluster"},
        "spec": {"domain": APPS_DOMAIN},
    }


def wait_established(names: list[str]) -> None:
    run(
        [*kubectl_argv(), "wait", "--for=condition=Established", "--timeout=60s"]
        + [f"crd/{name}" for name in names],
        capture=True,
    )


def project_admin_kubeconfig(path: Path) -> Path:
    pki.issue(PROJECT_ADMIN, f"/CN={PROJECT_ADMIN}")
    return pki.write_kubeconfig(path, PROJECT_ADMIN, PROJECT_ADMIN)


def install(profile: str) -> None:
    make_volume_dirs()
    apply(dns_objects() + storage_objects())
    if profile == "openshift":
        apply(openshift_objects())
        wait_established(["routes.route.openshift.io", "ingresses.config.openshift.io"])
        apply([cluster_ingress()])
