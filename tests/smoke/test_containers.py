"""Container-level checks through pytest-testinfra's docker backend."""

from __future__ import annotations

import ipaddress

import pytest
import testinfra

SERVICES = ("postgres", "sftp", "mlflow")
EXPECTED_PORTS = {"postgres": {5432}, "sftp": {2222}, "mlflow": {5000}}
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
def service(request: pytest.FixtureRequest, containers: dict[str, str]):
    name = containers[request.param]
    return request.param, name, testinfra.get_host(f"docker://{name}")


def test_every_process_runs_as_the_non_root_uid(service):
    _, name, host = service
    rows = [
        line.split()
        for line in host.check_output("ps -e -o pid=,euid=,ruid=,suid=,comm=").splitlines()
    ]
    assert rows, f"no processes listed in {name}"
    for pid, *uids, command in rows:
        assert all(int(uid) != 0 for uid in uids), (
            f"{name}: process {pid} ({command}) has a root UID {uids}"
        )


def test_container_is_hardened(service, docker_inspect):
    _, name, _ = service
    config = docker_inspect(name)
    host_config = config["HostConfig"]
    user = config["Config"]["User"]
    assert user.split(":")[0] not in {"", "0", "root"}, f"{name} runs as {user!r}"
    assert user.endswith(":0"), f"{name} must run in group 0, runs as {user!r}"
    assert host_config["ReadonlyRootfs"] is True
    assert host_config["CapDrop"] == ["ALL"]
    assert any(opt.startswith("no-new-privileges") for opt in host_config["SecurityOpt"])
    assert "/tmp" in host_config["Tmpfs"]
    assert host_config["Memory"] > 0, f"{name} has no memory limit"
    assert host_config["RestartPolicy"]["Name"] in {"unless-stopped", "always", "on-failure"}
    assert config["State"]["Health"]["Status"] == "healthy"


def test_only_the_expected_ports_listen(service):
    key, name, host = service
    ports = {
        port
        for address, port in listening_sockets(host)
        if ipaddress.ip_address(address) != DOCKER_DNS
    }
    assert ports == EXPECTED_PORTS[key], f"{name} listens on {sorted(ports)}"


def test_only_mlflow_and_sftp_are_published_on_the_bind_address(
    containers, settings, docker_inspect
):
    bind = str(settings.get("mlops_docker_bind_address", "127.0.0.1"))
    published = {
        key: docker_inspect(name)["HostConfig"]["PortBindings"] or {}
        for key, name in containers.items()
    }
    assert published["postgres"] == {}, "PostgreSQL must not be published on the host"
    for key, setting, default in (
        ("mlflow", "mlops_docker_mlflow_port", 5000),
        ("sftp", "mlops_docker_sftp_port", 2222),
    ):
        (bindings,) = published[key].values()
        assert bindings == [{"HostIp": bind, "HostPort": str(settings.get(setting, default))}]


def test_no_secret_in_the_container_configuration(containers, secret, docker_inspect):
    secrets = [secret(name) for name in ("postgres_superuser_password", "postgres_app_password",
                                          "mlflow_admin_password", "flask_secret_key")]  # fmt: skip
    for name in containers.values():
        config = docker_inspect(name)
        text = " ".join(config["Config"]["Env"] + (config["Config"]["Cmd"] or []))
        for value in secrets:
            assert value not in text, f"a secret shows in `docker inspect {name}`"
