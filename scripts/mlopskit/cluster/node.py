"""The node's processes: etcd, the control plane, kubelet (dockershim), kube-proxy, DNS.

Each runs in the background with its log in LOG_DIR and its pid in RUN_DIR. They are stopped by
pid, and only while that pid still runs the binary it was started as: a stale pid file never
gets an unrelated process killed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

from ..shell import CommandError, log
from . import config

STOP_TIMEOUT_S = 90


def pid_file(name: str) -> Path:
    return config.RUN_DIR / f"{name}.pid"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def running_pid(name: str) -> int | None:
    """The pid of component ``name`` if its pid file names a live process running it."""
    path = pid_file(name)
    try:
        pid, _, marker = path.read_text().partition("\n")
        number = int(pid)
    except (OSError, ValueError):
        return None
    if _state(number) in ("", "Z"):
        return None
    cmdline = _cmdline(number)
    # An empty command line: a process between fork and exec, or one that just changed its
    # credentials (dnsmasq); it is still ours, the pid cannot have been reused meanwhile.
    return number if not cmdline or marker.strip() in cmdline else None


def _state(pid: int) -> str:
    """The process state letter from /proc/<pid>/stat ("" when there is no such process)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def start(name: str, args: Sequence[str], *, env: dict[str, str] | None = None) -> int:
    """Start ``args`` detached unless component ``name`` already runs; return its pid."""
    if (pid := running_pid(name)) is not None:
        return pid
    config.RUN_DIR.mkdir(parents=True, exist_ok=True)
    config.LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = config.LOG_DIR / f"{name}.log"
    with log_path.open("ab") as out:
        proc = subprocess.Popen(
            list(args),
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    # The marker (the program and its first argument) must match /proc/<pid>/cmdline later.
    marker = " ".join(args[:2])
    pid_file(name).write_text(f"{proc.pid}\n{marker}\n")
    log(f"started {name} (pid {proc.pid}, log {log_path})")
    return proc.pid


def stop(name: str) -> None:
    pid = running_pid(name)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while _state(pid) not in ("", "Z") and time.monotonic() < deadline:
            time.sleep(0.5)
        if _state(pid) not in ("", "Z"):
            os.kill(pid, signal.SIGKILL)
            time.sleep(1)
        log(f"stopped {name} (pid {pid})")
    pid_file(name).unlink(missing_ok=True)


def _write_if_changed(path: Path, text: str) -> None:
    # kube-proxy exits whenever its config file is rewritten: write only on change.
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def kubelet_config() -> dict[str, object]:
    pki = config.PKI_DIR
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": config.NODE_IP,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
        },
        "authorization": {"mode": "AlwaysAllow"},
        "cgroupDriver": "cgroupfs",
        "clusterDomain": config.CLUSTER_DOMAIN,
        "clusterDNS": [config.DNS_SERVICE_IP],
        # An empty resolv.conf: pods get the cluster's DNS and nothing of the host's.
        "resolvConf": str(config.STATE_DIR / "resolv.conf"),
        "failSwapOn": False,
        # Nothing can be pulled back: never collect images.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        # The disk is shared with other work: evict only when it is really full.
        "evictionHard": {
            "memory.available": "200Mi",
            "nodefs.available": "2%",
            "imagefs.available": "2%",
            "nodefs.inodesFree": "2%",
        },
        "serializeImagePulls": False,
        "maxPods": 60,
    }


def kube_proxy_config() -> dict[str, object]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(config.ADMIN_KUBECONFIG)},
        "mode": "iptables",
        "clusterCIDR": config.POD_CIDR,
        "hostnameOverride": config.NODE_NAME,
        "bindAddress": config.NODE_IP,
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        # NodePorts only on the node's own address, not on the machine's interface.
        "nodePortAddresses": [config.NODE_CIDR],
        # Leave the host's conntrack settings alone.
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
        "oomScoreAdj": 0,
    }


def cni_config() -> dict[str, object]:
    return {
        "cniVersion": "0.4.0",
        "name": "mlops-kit",
        "plugins": [
            {
                "type": "bridge",
                "bridge": config.POD_BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": config.POD_CIDR}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(config.STATE_DIR / "cni" / "ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def write_configs(profile: str) -> None:
    state = config.STATE_DIR
    (state / "resolv.conf").write_text("")
    net_d = state / "cni" / "net.d"
    net_d.mkdir(parents=True, exist_ok=True)
    _write_if_changed(net_d / "10-mlops-kit.conflist", json.dumps(cni_config(), indent=2) + "\n")
    _write_if_changed(state / "kubelet.yaml", yaml.safe_dump(kubelet_config(), sort_keys=False))
    _write_if_changed(
        state / "kube-proxy.yaml", yaml.safe_dump(kube_proxy_config(), sort_keys=False)
    )
    _write_if_changed(state / "profile", profile + "\n")


def admission_plugins(profile: str) -> str:
    plugins = ["NodeRestriction"]
    if profile == "openshift":
        plugins.append("PodSecurityPolicy")
    return ",".join(plugins)


def start_etcd() -> None:
    data = config.STATE_DIR / "etcd"
    data.mkdir(parents=True, exist_ok=True, mode=0o700)
    start(
        "etcd",
        [
            "/usr/bin/etcd",
            f"--data-dir={data}",
            "--name=mlops-node",
            f"--listen-client-urls={config.ETCD_CLIENT_URL}",
            f"--advertise-client-urls={config.ETCD_CLIENT_URL}",
            f"--listen-peer-urls={config.ETCD_PEER_URL}",
            f"--initial-advertise-peer-urls={config.ETCD_PEER_URL}",
            f"--initial-cluster=mlops-node={config.ETCD_PEER_URL}",
            "--listen-metrics-urls=",
        ],
        env={"ETCD_UNSUPPORTED_ARCH": ""},
    )


def start_control_plane(bin_dir: Path, profile: str) -> None:
    pki = config.PKI_DIR
    start(
        "kube-apiserver",
        [
            str(bin_dir / "kube-apiserver"),
            f"--etcd-servers={config.ETCD_CLIENT_URL}",
            f"--bind-address={config.NODE_IP}",
            f"--advertise-address={config.NODE_IP}",
            f"--secure-port={config.API_PORT}",
            "--insecure-port=0",
            f"--service-cluster-ip-range={config.SERVICE_CIDR}",
            "--service-node-port-range=30000-32767",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--kubelet-client-certificate={pki / 'admin.crt'}",
            f"--kubelet-client-key={pki / 'admin.key'}",
            "--kubelet-preferred-address-types=InternalIP",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-account-issuer=https://kubernetes.default.svc.{config.CLUSTER_DOMAIN}",
            "--authorization-mode=Node,RBAC",
            f"--enable-admission-plugins={admission_plugins(profile)}",
            "--allow-privileged=true",
            "--profiling=false",
            "--event-ttl=1h",
        ],
    )
    wait_for_api()
    common = [
        f"--kubeconfig={config.ADMIN_KUBECONFIG}",
        "--leader-elect=false",
        "--bind-address=127.0.0.1",
        "--port=0",
        "--profiling=false",
    ]
    start(
        "kube-controller-manager",
        [
            str(bin_dir / "kube-controller-manager"),
            *common,
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            "--use-service-account-credentials=true",
            f"--service-cluster-ip-range={config.SERVICE_CIDR}",
            "--controllers=*,-csrsigning,-csrapproving,-csrcleaner,-nodeipam",
        ],
    )
    start("kube-scheduler", [str(bin_dir / "kube-scheduler"), *common])


def start_node(bin_dir: Path) -> None:
    state = config.STATE_DIR
    start(
        "kubelet",
        [
            str(bin_dir / "kubelet"),
            f"--config={state / 'kubelet.yaml'}",
            f"--kubeconfig={state / 'kubelet.kubeconfig'}",
            f"--root-dir={state / 'kubelet'}",
            f"--cert-dir={state / 'kubelet-pki'}",
            f"--hostname-override={config.NODE_NAME}",
            f"--node-ip={config.NODE_IP}",
            "--container-runtime=docker",
            "--network-plugin=cni",
            f"--cni-bin-dir={config.CNI_BIN_DIR}",
            f"--cni-conf-dir={state / 'cni' / 'net.d'}",
            f"--cni-cache-dir={state / 'cni' / 'cache'}",
            f"--pod-infra-container-image={config.PAUSE_IMAGE}",
            "--image-pull-progress-deadline=10m",
            "--v=1",
        ],
    )
    start(
        "kube-proxy",
        [str(bin_dir / "kube-proxy"), f"--config={state / 'kube-proxy.yaml'}"],
    )


def start_dns() -> None:
    hosts = config.STATE_DIR / "dns"
    hosts.mkdir(parents=True, exist_ok=True)
    hosts.chmod(0o755)
    start(
        "dnsmasq",
        [
            "/usr/sbin/dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--log-facility=-",
            "--no-resolv",
            "--no-hosts",
            "--pid-file=",
            f"--hostsdir={hosts}",
            f"--listen-address={config.NODE_IP}",
            "--bind-interfaces",
            f"--local=/{config.CLUSTER_DOMAIN}/",
            "--local-ttl=5",
            "--neg-ttl=2",
        ],
    )
    start(
        "agent",
        [sys.executable, "-m", "mlopskit.cluster.agent"],
        env={"PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )


def wait_for_api(timeout_s: float = 120) -> None:
    from .kube import api_get

    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        if running_pid("kube-apiserver") is None:
            raise CommandError(
                f"kube-apiserver exited; see {config.LOG_DIR / 'kube-apiserver.log'}"
            )
        try:
            if api_get("/readyz") == b"ok":
                return
        except OSError as exc:
            last = str(exc)
        time.sleep(1)
    raise CommandError(f"the API server did not get ready in {timeout_s:.0f}s ({last})")


COMPONENTS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "dnsmasq",
    "agent",
)
