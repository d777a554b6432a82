"""The node's housekeeping loop, run in the background by ``make cluster``.

- Cluster DNS: there is no CoreDNS package, so dnsmasq answers ``cluster.local`` from a hosts
  file that this loop rewrites from the Services (``<svc>.<ns>.svc.cluster.local`` -> ClusterIP;
  headless Services -> their endpoints, plus ``<pod-hostname>.<svc>...`` for StatefulSet pods).
- Volumes: released hostPath PersistentVolumes of the default StorageClass are wiped and made
  Available again (what a provisioner's delete would do), so a purge frees them for the next
  release.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from . import config
from .kube import api_list, api_request

INTERVAL_S = 2.0
HOSTS_FILE = config.STATE_DIR / "dns" / "cluster.hosts"
VOLUME_LABEL = "mlops-kit.cluster/volume"


def hosts_lines(services: list[dict[str, Any]], endpoints: list[dict[str, Any]]) -> list[str]:
    """``IP name`` lines for every Service (and the addresses of headless ones)."""
    domain = config.CLUSTER_DOMAIN
    by_key = {(e["metadata"]["namespace"], e["metadata"]["name"]): e for e in endpoints}
    lines = []
    for svc in services:
        meta, spec = svc["metadata"], svc.get("spec", {})
        name = f"{meta['name']}.{meta['namespace']}.svc.{domain}"
        cluster_ip = spec.get("clusterIP", "")
        if cluster_ip and cluster_ip != "None":
            lines.append(f"{cluster_ip} {name}")
            continue
        for subset in by_key.get((meta["namespace"], meta["name"]), {}).get("subsets", []):
            for address in subset.get("addresses", []):
                lines.append(f"{address['ip']} {name}")
                if hostname := address.get("hostname"):
                    lines.append(f"{address['ip']} {hostname}.{name}")
    return sorted(set(lines))


def write_hosts(lines: list[str]) -> None:
    text = "".join(f"{line}\n" for line in lines)
    if HOSTS_FILE.exists() and HOSTS_FILE.read_text() == text:
        return
    partial = HOSTS_FILE.with_suffix(".partial")
    partial.write_text(text)
    partial.chmod(0o644)
    partial.rename(HOSTS_FILE)  # dnsmasq (--hostsdir) reloads it on rename


def recycle_volumes(volumes: list[dict[str, Any]]) -> None:
    for volume in volumes:
        meta, spec = volume["metadata"], volume.get("spec", {})
        if meta.get("labels", {}).get(VOLUME_LABEL) != "true":
            continue
        if volume.get("status", {}).get("phase") != "Released":
            continue
        path = Path(spec.get("hostPath", {}).get("path", ""))
        if path.parent != config.VOLUMES_DIR:
            continue
        for child in path.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        api_request(
            "PATCH",
            f"/api/v1/persistentvolumes/{meta['name']}",
            {"spec": {"claimRef": None}},
            "application/merge-patch+json",
        )
        print(f"recycled {meta['name']}", flush=True)


def main() -> None:
    while True:
        try:
            write_hosts(hosts_lines(api_list("/api/v1/services"), api_list("/api/v1/endpoints")))
            recycle_volumes(api_list("/api/v1/persistentvolumes"))
        except OSError as exc:  # the API server restarting; try again
            print(f"agent: {exc}", flush=True)
        time.sleep(INTERVAL_S)


if __name__ == "__main__":
    main()
