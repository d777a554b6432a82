"""Container-level checks of every service, on every target: inside the container through
pytest-testinfra (docker or kubectl backend), and the target's own record of how it runs
(`docker inspect`, or the pod spec and Services), both through `stack` (tests/smoke/stack.py)."""

from __future__ import annotations

import ipaddress
import time

import pytest
import testinfra

from tests.smoke.stack import SERVICES, Stack

EXPECTED_PORTS = {"postgresql": {5432}, "sftp": {2222}, "mlflow": {5000}}
# Docker's embedded DNS resolver listens inside every user-defined network's namespace
# (owned by dockerd, not by the container): 127.0.0.11 on a random port.
DOCKER_DNS = ipaddress.ip_address("127.0.0.11")
TCP_LISTEN = "0A"


def listening_sockets(host: testinfra.host.Host) -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket, read from /proc (no ss/netstat needed)."""
    found: set[tuple[str, int]] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in host.file(table).content_string.splitlines()[1:]:
            fields = line.split()
            if len(fields) < 4 or fields[3] != TCP_LISTEN:
                continue
            address_hex, port_hex = fields[1].split(":")
            raw = bytes.fromhex(address_hex)
            # /proc prints each 32-bit word in host (little-endian) order.
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            address = ipaddress.ip_address(words)
            found.add((str(address), int(port_hex, 16)))
    return found


@pytest.fixture(scope="module", params=SERVICES)
def service(request: pytest.FixtureRequest, stack: Stack):
    """(service, where it runs, testinfra host), for each service in turn."""
    spec = stack.host_spec(request.param)
    return request.param, spec, testinfra.get_host(spec)


PS_IDS = "ps -e -o pid=,euid=,ruid=,suid=,comm="


def root_processes(host: testinfra.host.Host) -> dict[str, str]:
    """pid -> command of every process with a root UID (effective, real or saved)."""
    rows = [line.split() for line in host.check_output(PS_IDS).splitlines()]
    assert rows, "no processes listed"
    return {pid: command for pid, *uids, command in rows if any(int(uid) == 0 for uid in uids)}


def test_every_process_runs_as_the_non_root_uid(service):
    _, name, host = service
    found = root_processes(host)
    if found and all(command.startswith("runc:[") for command in found.values()):
        # The runtime's own init of a `docker exec` (the healthcheck) is root for an instant,
        # before it switches to the container's user and execs. A second look must not find
        # it again: a process that only borrows the name stays and fails.
        time.sleep(1)
        found = {pid: cmd for pid, cmd in root_processes(host).items() if pid in found}
    assert not found, f"{name}: processes with a root UID: {found}"


def test_container_is_hardened(service, stack: Stack):
    """Docker: non-root UID in group 0, read-only, no capabilities, no-new-privileges, /tmp tmpfs,
    memory limit, restart policy, healthy. Kubernetes: the same in the pod spec (runAsNonRoot,
    readOnlyRootFilesystem, drop ALL, no privilege escalation, seccomp RuntimeDefault, memory
    limit, /tmp emptyDir, secrets as files, no host namespaces or ports), restart Always, ready."""
    key, name, _ = service
    assert stack.hardening_problems(key) == [], f"{name} is not hardened"


def test_only_the_expected_ports_listen(service):
    key, name, host = service
    ports = {
        port
        for address, port in listening_sockets(host)
        if ipaddress.ip_address(address) != DOCKER_DNS
    }
    assert ports == EXPECTED_PORTS[key], f"{name} listens on {sorted(ports)}"


def test_postgresql_is_reachable_only_inside_the_stack(stack: Stack):
    """Docker: PostgreSQL has no published port, MLflow and SFTP exactly theirs on the bind
    address. Kubernetes: PostgreSQL's Services are ClusterIP only (no node ports, external IPs)."""
    assert stack.exposure_problems() == []


def test_no_secret_in_the_container_configuration(stack: Stack):
    """Secrets reach the containers as files: no value shows in `docker inspect` (Env, Cmd) or in
    the pod spec (env values, command, args, annotations)."""
    secrets = stack.secret_values()
    assert secrets, "no secret values found to look for"
    for key in SERVICES:
        shown = stack.visible_configuration(key)
        leaked = [index for index, value in enumerate(secrets) if value in shown]
        assert not leaked, f"{len(leaked)} secret(s) show in the configuration of {key}"
