"""Host side of the node: bridges and routes it owns, its iptables rules, the sysctls it changes.

Every cluster address lives on a bridge the cluster creates (``NODE_BRIDGE`` holds the node
address, the CNI plugin makes ``POD_BRIDGE``) and the Service range is routed to the node bridge,
so nothing the cluster sends leaves through the machine's own interface. A forward rule keeps
pods on their bridge: no pod traffic is forwarded anywhere else.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..shell import log, run, succeeds
from . import config

SYSCTL_SAVED = config.STATE_DIR / "sysctl.saved.json"
FORWARD_CHAIN = "MLOPS-CLUSTER-FWD"
# Chains the kubelet, kube-proxy and CNI plugins create; removed at stop (never anyone else's).
OWNED_CHAIN_PREFIXES = ("KUBE-", "CNI-", FORWARD_CHAIN)
# The name ($0) of the port-forward loops a Kubernetes deploy starts
# (ansible/roles/mlops_kubernetes/vars/main.yml: mlops_kubernetes_forward_launcher).
PORT_FORWARD_LOOP = "mlops-kit-port-forward"


def _sysctl_path(key: str) -> Path:
    return Path("/proc/sys") / key.replace(".", "/")


def save_sysctls() -> None:
    """Record the host's values once per cluster life (the first start), before anything runs."""
    if SYSCTL_SAVED.exists():
        return
    saved = {
        key: _sysctl_path(key).read_text().strip()
        for key in config.SYSCTLS
        if _sysctl_path(key).exists()
    }
    SYSCTL_SAVED.write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")


def restore_sysctls() -> list[str]:
    """Write back every saved value that differs now; return what was restored."""
    if not SYSCTL_SAVED.exists():
        return []
    restored = []
    for key, value in json.loads(SYSCTL_SAVED.read_text()).items():
        path = _sysctl_path(key)
        if path.exists() and path.read_text().strip() != value:
            path.write_text(value + "\n")
            restored.append(f"{key}={value}")
    SYSCTL_SAVED.unlink()
    return restored


def bridges_up() -> None:
    if not succeeds(["ip", "link", "show", config.NODE_BRIDGE]):
        run(["ip", "link", "add", config.NODE_BRIDGE, "type", "bridge"])
    prefix = config.NODE_CIDR.split("/")[1]
    addr = run(["ip", "-br", "addr", "show", config.NODE_BRIDGE], capture=True, quiet=True)
    if f"{config.NODE_IP}/{prefix}" not in addr.stdout.decode():
        run(["ip", "addr", "add", f"{config.NODE_IP}/{prefix}", "dev", config.NODE_BRIDGE])
    run(["ip", "link", "set", config.NODE_BRIDGE, "up"], quiet=True)
    run(["ip", "route", "replace", config.SERVICE_CIDR, "dev", config.NODE_BRIDGE], quiet=True)


def forward_rules() -> None:
    """Pods may talk to each other (and the host); nothing of theirs is forwarded elsewhere."""
    if not succeeds(["iptables", "-n", "-L", FORWARD_CHAIN]):
        run(["iptables", "-N", FORWARD_CHAIN], quiet=True)
    run(["iptables", "-F", FORWARD_CHAIN], quiet=True)
    rules = (
        ["-i", config.POD_BRIDGE, "-o", config.POD_BRIDGE, "-j", "ACCEPT"],
        ["-i", config.POD_BRIDGE, "-j", "REJECT"],
        ["-o", config.POD_BRIDGE, "-j", "REJECT"],
    )
    for rule in rules:
        run(["iptables", "-A", FORWARD_CHAIN, *rule], quiet=True)
    if not succeeds(["iptables", "-C", "FORWARD", "-j", FORWARD_CHAIN]):
        run(["iptables", "-I", "FORWARD", "1", "-j", FORWARD_CHAIN], quiet=True)


def remove_owned_chains() -> None:
    """Delete the jumps to, then the chains the cluster created (IPv4 and IPv6 tables)."""
    for tool in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            _remove_owned_chains(tool, table)


def _remove_owned_chains(tool: str, table: str) -> None:
    out = run([tool, "-t", table, "-S"], capture=True, check=False, quiet=True).stdout.decode()
    lines = [shlex.split(line) for line in out.splitlines()]
    owned = [parts[1] for parts in lines if parts[:1] == ["-N"] and _owned(parts[1])]
    for parts in lines:
        if parts[:1] == ["-A"] and not _owned(parts[1]) and _jumps_to_owned(parts):
            run([tool, "-t", table, "-D", *parts[1:]], check=False, quiet=True)
    for chain in owned:
        run([tool, "-t", table, "-F", chain], check=False, quiet=True)
    for chain in owned:
        run([tool, "-t", table, "-X", chain], check=False, quiet=True)


def _owned(chain: str) -> bool:
    return chain.startswith(OWNED_CHAIN_PREFIXES)


def _jumps_to_owned(parts: list[str]) -> bool:
    for flag in ("-j", "-g"):
        if flag in parts:
            index = parts.index(flag)
            if index + 1 < len(parts) and _owned(parts[index + 1]):
                return True
    return False


def bridges_down() -> None:
    run(["ip", "route", "del", config.SERVICE_CIDR], check=False, quiet=True)
    for bridge in (config.POD_BRIDGE, config.NODE_BRIDGE):
        if succeeds(["ip", "link", "show", bridge]):
            run(["ip", "link", "del", bridge], quiet=True)
            log(f"removed bridge {bridge}")


def unmount_under(root: Path) -> None:
    """Unmount whatever the kubelet mounted below ``root`` (secret tmpfs, bind mounts)."""
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    prefix = str(root).rstrip("/") + "/"
    for mount in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        run(["umount", "-l", mount], check=False, quiet=True)


def forward_loop_kubeconfig(argv: Sequence[str]) -> str | None:
    """The kubeconfig of a deploy's port-forward loop (``bash -c LOOP mlops-kit-port-forward
    kubectl --kubeconfig PATH ...``), or None when ``argv`` is not such a loop."""
    if len(argv) < 4 or argv[1] != "-c" or argv[3] != PORT_FORWARD_LOOP:
        return None
    rest = list(argv[4:])
    if "--kubeconfig" in rest[:-1]:
        return rest[rest.index("--kubeconfig") + 1]
    return None


def _command_lines() -> Iterable[tuple[int, list[str]]]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                raw = (entry / "cmdline").read_bytes()
            except OSError:  # gone meanwhile
                continue
            yield int(entry.name), [a.decode(errors="replace") for a in raw.split(b"\0")[:-1]]


def stop_port_forwards(kubeconfigs: Iterable[Path]) -> int:
    """Stop the deploys' port-forward loops into this cluster (each with its kubectl: a loop is
    the leader of its process group). Without the cluster they only retry, and the next cluster
    on this machine would answer them on the same local ports as a later deploy's own."""
    ours = {str(path.resolve()) for path in kubeconfigs}
    stopped = 0
    for pid, argv in _command_lines():
        kubeconfig = forward_loop_kubeconfig(argv)
        if kubeconfig is None or str(Path(kubeconfig).resolve()) not in ours:
            continue
        try:
            os.killpg(pid, signal.SIGTERM)  # the loop leads its group (setsid)
        except ProcessLookupError:
            continue
        stopped += 1
    return stopped
