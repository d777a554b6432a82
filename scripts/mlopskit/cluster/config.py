"""Every address, port, path and name of the throwaway cluster, in one place.

The cluster is one per machine (its bridges, ports and routes are machine-wide): its state lives
under ``STATE_DIR`` and its build under ``CACHE_ROOT``, both outside any work tree, so a fresh
clone finds a running cluster or a finished build. Each work tree gets its own copy of the
kubeconfig in ``build/cluster/kubeconfig``.
"""

from __future__ import annotations

from pathlib import Path

from ..versions import REPO_ROOT

CACHE_ROOT = Path("/var/cache/mlops-kit/cluster")
STATE_DIR = Path("/var/lib/mlops-kit/cluster")
RUN_DIR = STATE_DIR / "run"  # pid files
LOG_DIR = STATE_DIR / "logs"
PKI_DIR = STATE_DIR / "pki"
VOLUMES_DIR = STATE_DIR / "volumes"
KUBECONFIG = REPO_ROOT / "build" / "cluster" / "kubeconfig"
# The OpenShift-like profile's project admin (no cluster rights), beside it.
PROJECT_ADMIN_KUBECONFIG = KUBECONFIG.with_name("project-admin.kubeconfig")
ADMIN_KUBECONFIG = STATE_DIR / "admin.kubeconfig"

NODE_NAME = "mlops-node"
CLUSTER_DOMAIN = "cluster.local"
# Three /24s on bridges the cluster creates; nothing is routed through the machine's interface.
NODE_BRIDGE = "mlk-node0"  # holds the node address only (an empty bridge: no dummy driver here)
NODE_CIDR = "10.213.0.0/24"
NODE_IP = "10.213.0.1"
POD_BRIDGE = "mlk-cni0"  # the CNI bridge plugin's
POD_CIDR = "10.214.0.0/24"
SERVICE_CIDR = "10.215.0.0/24"
API_SERVICE_IP = "10.215.0.1"
DNS_SERVICE_IP = "10.215.0.10"
API_PORT = 6443
ETCD_CLIENT_URL = "http://127.0.0.1:23790"
ETCD_PEER_URL = "http://127.0.0.1:23800"
API_URL = f"https://{NODE_IP}:{API_PORT}"

PAUSE_VERSION = "3.4"
PAUSE_IMAGE = f"mlops-kit/cluster-pause:{PAUSE_VERSION}"
CNI_BIN_DIR = Path("/usr/lib/cni")
RUNTIME_PACKAGES = (
    "docker.io",
    "etcd-server",
    "containernetworking-plugins",
    "dnsmasq-base",
    "iptables",
    "conntrack",
    "socat",
    "ebtables",
    "ethtool",
    "openssl",
)
# hostPath PersistentVolumes of the default StorageClass (hostPath ignores the size).
STORAGE_CLASS = "standard"
VOLUME_COUNT = 16
VOLUME_SIZE = "100Gi"
# Host settings the kubelet and kube-proxy change: saved at start, restored at stop.
SYSCTLS = (
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "net.ipv4.conf.all.route_localnet",
    "net.ipv4.ip_forward",
    "net.bridge.bridge-nf-call-iptables",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_tcp_timeout_established",
    "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
)
PROFILES = ("kubernetes", "openshift")
# OpenShift-like profile: restricted-v2's UID range (one for the whole cluster here).
OPENSHIFT_UID_MIN = 1000690000
OPENSHIFT_UID_MAX = 1000699999
