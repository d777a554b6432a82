"""Pure logic of the throwaway cluster's tooling (scripts/mlopskit/cluster): no cluster needed."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from mlopskit.cluster import agent, build, config, host, node
from mlopskit.shell import CommandError


def test_services_resolve_to_cluster_ips_and_headless_ones_to_endpoints():
    services = [
        {"metadata": {"name": "mlflow", "namespace": "mlops"}, "spec": {"clusterIP": "10.215.0.7"}},
        {"metadata": {"name": "pg-headless", "namespace": "mlops"}, "spec": {"clusterIP": "None"}},
    ]
    endpoints = [
        {
            "metadata": {"name": "pg-headless", "namespace": "mlops"},
            "subsets": [{"addresses": [{"ip": "10.214.0.9", "hostname": "pg-0"}]}],
        }
    ]
    assert agent.hosts_lines(services, endpoints) == [
        "10.214.0.9 pg-0.pg-headless.mlops.svc.cluster.local",
        "10.214.0.9 pg-headless.mlops.svc.cluster.local",
        "10.215.0.7 mlflow.mlops.svc.cluster.local",
    ]


def test_only_jumps_to_the_clusters_chains_are_removed():
    assert host._jumps_to_owned(["-A", "FORWARD", "-j", "KUBE-FORWARD"])
    assert host._jumps_to_owned(["-A", "FORWARD", "-j", host.FORWARD_CHAIN])
    assert not host._jumps_to_owned(["-A", "FORWARD", "-j", "DOCKER-USER"])
    assert not host._jumps_to_owned(["-A", "FORWARD", "-o", "KUBE-looking-iface", "-j", "ACCEPT"])


def started_sleep() -> subprocess.Popen:
    """`sleep 60`, returned once it runs as sleep: right after the fork, its command line is
    still the forking Python's, which a pid check rightly does not take for `sleep 60`."""
    process = subprocess.Popen(["sleep", "60"])
    cmdline = Path(f"/proc/{process.pid}/cmdline")
    deadline = time.monotonic() + 10
    while cmdline.read_bytes() != b"sleep\x0060\x00" and time.monotonic() < deadline:
        time.sleep(0.01)
    return process


def test_a_stale_pid_file_never_names_someone_elses_process(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "RUN_DIR", tmp_path)
    stranger = started_sleep()
    try:
        (tmp_path / "kubelet.pid").write_text(f"{stranger.pid}\n/var/cache/kubelet --config\n")
        assert node.running_pid("kubelet") is None
        node.stop("kubelet")  # must leave the stranger alone
        assert stranger.poll() is None
        assert not (tmp_path / "kubelet.pid").exists()
        (tmp_path / "sleeper.pid").write_text(f"{stranger.pid}\nsleep 60\n")
        assert node.running_pid("sleeper") == stranger.pid
    finally:
        stranger.kill()
        stranger.wait()


def test_patches_apply_exactly_once(tmp_path, monkeypatch):
    for patch in build.PATCHES:
        path = tmp_path / patch.path
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.write_text("package x\n")
        path.write_text(path.read_text() + f"const {patch.old}\n")
    reflect2 = tmp_path / "debian-reflect2"
    reflect2.mkdir()
    (reflect2 / "go_above_118.go").write_text("package reflect2\n")
    (reflect2 / "x_test.go").write_text("package reflect2\n")
    (tmp_path / build.REFLECT2_VENDOR).mkdir(parents=True)
    monkeypatch.setattr(build, "REFLECT2_DEBIAN", reflect2)
    build.apply_patches(tmp_path)
    for patch in build.PATCHES:
        text = (tmp_path / patch.path).read_text()
        assert patch.new in text
        assert patch.old not in text
    vendored = sorted(p.name for p in (tmp_path / build.REFLECT2_VENDOR).iterdir())
    assert vendored == ["go_above_118.go"]
    with pytest.raises(CommandError, match="exactly once"):
        build.apply_patches(tmp_path)  # the source changed: say so instead of building


def test_the_cache_key_follows_every_input():
    spec = {"recipe": 1, "source": "kubernetes 1.20", "golang-go": "2:1.19~1", "patches": []}
    key = build.inputs_hash(spec)
    assert build.inputs_hash(dict(spec)) == key
    for field, value in (("golang-go", "2:1.21~1"), ("source", "kubernetes 1.21"), ("recipe", 2)):
        assert build.inputs_hash({**spec, field: value}) != key


def test_the_node_keeps_to_its_own_addresses():
    proxy = node.kube_proxy_config()
    assert proxy["nodePortAddresses"] == [config.NODE_CIDR]
    assert proxy["conntrack"]["maxPerCore"] == 0, "kube-proxy must leave conntrack sysctls alone"
    kubelet = node.kubelet_config()
    assert kubelet["address"] == config.NODE_IP
    assert kubelet["imageGCHighThresholdPercent"] == 100, "nothing could be pulled back"
    assert node.cni_config()["plugins"][0]["ipMasq"] is False, "pods must not reach out"
    assert Path(kubelet["resolvConf"]).parent == config.STATE_DIR


def forward_loop(kubeconfig: Path) -> subprocess.Popen[bytes]:
    """A loop shaped like a deploy's port-forward (its own session), whose command runs long."""
    loop = 'while :; do "$@"; sleep 1; done'
    command = ["sh", "-c", "sleep 600", "--kubeconfig", str(kubeconfig)]
    return subprocess.Popen(
        ["/bin/bash", "-c", loop, host.PORT_FORWARD_LOOP, *command], start_new_session=True
    )


def test_a_port_forward_loop_is_known_by_its_name_and_kubeconfig():
    loop = ["/bin/bash", "-c", "while :; do ...", host.PORT_FORWARD_LOOP]
    kubectl = ["/usr/bin/kubectl", "--kubeconfig", "/k/kubeconfig", "port-forward", "svc/x"]
    assert host.forward_loop_kubeconfig([*loop, *kubectl]) == "/k/kubeconfig"
    assert host.forward_loop_kubeconfig(kubectl) is None  # the kubectl itself: its group goes
    assert host.forward_loop_kubeconfig([*loop, "/usr/bin/kubectl", "port-forward"]) is None
    assert host.forward_loop_kubeconfig([*loop[:3], "other-loop", *kubectl]) is None
    assert host.forward_loop_kubeconfig([*loop, "kubectl", "--kubeconfig"]) is None


def test_the_launcher_names_its_loops_as_cluster_down_looks_for_them():
    launcher = Path(__file__).parents[2] / "ansible/roles/mlops_kubernetes/vars/main.yml"
    assert f'\n  {host.PORT_FORWARD_LOOP} "$@"' in launcher.read_text()


def test_cluster_down_stops_only_the_port_forwards_into_this_cluster(tmp_path):
    ours, theirs = forward_loop(tmp_path / "kubeconfig"), forward_loop(tmp_path / "other")
    try:
        assert host.stop_port_forwards([tmp_path / "kubeconfig"]) == 1
        assert ours.wait(timeout=10) != 0
        assert theirs.poll() is None, "a port-forward into another cluster was stopped"
    finally:
        for loop in (ours, theirs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(loop.pid, signal.SIGKILL)
            loop.wait()
