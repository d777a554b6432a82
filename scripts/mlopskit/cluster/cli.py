"""Command line of the throwaway cluster (``make cluster``, ``make cluster-down``).

mlopskit cluster build              # the server binaries only (cached)
mlopskit cluster up [--profile P]   # start (or find) the node; write the kubeconfig
mlopskit cluster down               # stop it, remove its state, restore the host
mlopskit cluster status
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from ..shell import CommandError, log, run, succeeds
from . import addons, config, host, node, pki

NODE_READY_TIMEOUT_S = 180


def _require_root() -> None:
    if os.geteuid() != 0:
        raise CommandError("the cluster needs root (bridges, iptables, the kubelet)")


def _runtime_packages() -> None:
    from ..engine import apt_install, ensure_engine

    missing = [
        package
        for package in config.RUNTIME_PACKAGES
        if "ok installed"
        not in run(
            ["dpkg-query", "-W", "-f=${Status}", package], capture=True, check=False, quiet=True
        ).stdout.decode()
    ]
    if missing:
        apt_install(*missing)
    ensure_engine()


def _pause_image(bin_dir: Path) -> None:
    if succeeds(["docker", "image", "inspect", config.PAUSE_IMAGE]):
        return
    with tempfile.TemporaryDirectory() as context:
        shutil.copy2(bin_dir / "pause", Path(context) / "pause")
        (Path(context) / "Dockerfile").write_text(
            'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n'
        )
        run(["docker", "build", "--quiet", "-t", config.PAUSE_IMAGE, context], capture=True)
    log(f"built {config.PAUSE_IMAGE} from the source's pause.c")


def running_profile() -> str | None:
    if all(node.running_pid(name) is not None for name in node.COMPONENTS):
        path = config.STATE_DIR / "profile"
        return path.read_text().strip() if path.exists() else None
    return None


def write_kubeconfigs(profile: str) -> None:
    pki.write_kubeconfig(config.KUBECONFIG, "admin", "mlops-kit-admin")
    project_admin = config.PROJECT_ADMIN_KUBECONFIG
    if profile == "openshift":
        addons.project_admin_kubeconfig(project_admin)
    else:
        project_admin.unlink(missing_ok=True)
    log(f"kubeconfig: {config.KUBECONFIG}")


def wait_node_ready() -> None:
    from .kube import api_get

    deadline = time.monotonic() + NODE_READY_TIMEOUT_S
    while time.monotonic() < deadline:
        for name in node.COMPONENTS:
            if node.running_pid(name) is None:
                raise CommandError(f"{name} exited; see {config.LOG_DIR / (name + '.log')}")
        try:
            import json

            status = json.loads(api_get(f"/api/v1/nodes/{config.NODE_NAME}"))["status"]
            if any(c["type"] == "Ready" and c["status"] == "True" for c in status["conditions"]):
                return
        except OSError:
            pass
        time.sleep(1)
    raise CommandError(
        f"node not Ready in {NODE_READY_TIMEOUT_S}s; see {config.LOG_DIR / 'kubelet.log'}"
    )


def up(profile: str, *, switch: bool = False) -> None:
    _require_root()
    started = time.monotonic()
    current = running_profile()
    if current is not None and current != profile and switch:
        log(f"the cluster runs profile {current!r}: replacing it by a fresh {profile!r} one")
        down(keep_kubeconfig=True)
        current = None
    if current is not None and current != profile:
        raise CommandError(
            f"the cluster runs profile {current!r}; `make cluster-down` first to get {profile!r}"
        )
    _runtime_packages()
    from .build import cached_build

    bin_dir = cached_build() / "bin"
    if current is None:
        saved = config.STATE_DIR / "profile"
        if saved.exists() and saved.read_text().strip() != profile:
            log(f"state of profile {saved.read_text().strip()!r} left behind: removing it")
            down(keep_kubeconfig=True)
        config.STATE_DIR.mkdir(parents=True, exist_ok=True)
        # Traversable (dnsmasq reads its hosts file as nobody); the PKI and etcd dirs are 0700.
        config.STATE_DIR.chmod(0o711)
        host.save_sysctls()
        pki.ensure()
        host.bridges_up()
        host.forward_rules()
        node.write_configs(profile)
        _pause_image(bin_dir)
        node.start_etcd()
        node.start_control_plane(bin_dir, profile)
        addons.install(profile)
        node.start_node(bin_dir)
        node.start_dns()
        wait_node_ready()
    write_kubeconfigs(profile)
    log(f"cluster ({profile}) ready in {time.monotonic() - started:.0f}s")


def down(*, keep_kubeconfig: bool = False) -> None:
    _require_root()
    started = time.monotonic()
    if stopped := host.stop_port_forwards((config.KUBECONFIG, config.PROJECT_ADMIN_KUBECONFIG)):
        log(f"stopped {stopped} port-forward(s) into the cluster")
    for name in ("agent", "dnsmasq", "kube-proxy", "kubelet"):
        node.stop(name)
    if shutil.which("docker") and succeeds(["docker", "info"]):
        out = run(
            ["docker", "ps", "-aq", "--filter", "label=io.kubernetes.docker.type"],
            capture=True,
            quiet=True,
        )
        if ids := out.stdout.decode().split():
            run(["docker", "rm", "-f", "-v", *ids], capture=True, quiet=True)
            log(f"removed {len(ids)} pod containers")
    for name in ("kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"):
        node.stop(name)
    host.remove_owned_chains()
    host.unmount_under(config.STATE_DIR)
    host.bridges_down()
    if restored := host.restore_sysctls():
        log(f"restored {', '.join(restored)}")
    if config.STATE_DIR.exists():
        shutil.rmtree(config.STATE_DIR)
    if not keep_kubeconfig:
        config.KUBECONFIG.unlink(missing_ok=True)
        config.PROJECT_ADMIN_KUBECONFIG.unlink(missing_ok=True)
    log(f"cluster removed in {time.monotonic() - started:.0f}s")


def status() -> None:
    for name in node.COMPONENTS:
        pid = node.running_pid(name)
        print(f"{name:24} {'pid ' + str(pid) if pid else 'not running'}")
    profile = running_profile()
    print(f"profile: {profile or '-'}")


def _build(_args: argparse.Namespace) -> None:
    from .build import cached_build

    log(f"server binaries in {cached_build() / 'bin'}")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register `mlopskit cluster COMMAND` (see the module's docstring); each sets `func`."""
    sub.add_parser("build", help="build (or find) the server binaries").set_defaults(func=_build)
    start = sub.add_parser("up", help="start the node (or find it running)")
    start.add_argument("--profile", choices=config.PROFILES, default="kubernetes")
    start.add_argument(
        "--switch", action="store_true", help="replace a running cluster of another profile"
    )
    start.set_defaults(func=lambda args: up(args.profile, switch=args.switch))
    down_parser = sub.add_parser("down", help="stop the node, remove its state, restore the host")
    down_parser.set_defaults(func=lambda _args: down())
    sub.add_parser("status", help="which components run").set_defaults(func=lambda _args: status())
