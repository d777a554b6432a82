"""A real S3 store for tests: Ceph's RADOS Gateway (tests/support/s3store), in a sandbox.

The image is built from the project's Debian base (no registry needed) and tagged by a hash of
its build context, so a changed store is rebuilt and an unchanged one is reused.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from mlopskit.base_image import SUITE, ensure_base_image, registry_base_image

from tests.support.docker import Container, Sandbox, docker, secret_dir

CONTEXT = Path(__file__).parent / "s3store"
REPOSITORY = "mlops-kit-tests/s3store"
PORT = 7480


def image_tag() -> str:
    digest = hashlib.sha256()
    for path in sorted(CONTEXT.iterdir()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return f"{REPOSITORY}:{digest.hexdigest()[:12]}"


def ensure_image() -> str:
    """The store's image, built once per content of its build context."""
    tag = image_tag()
    if docker("image", "inspect", tag, check=False).returncode == 0:
        return tag
    base = ensure_base_image(registry_base_image(SUITE))
    subprocess.run(
        ["docker", "build", "--tag", tag, "--build-arg", f"BASE_IMAGE={base}", str(CONTEXT)],
        check=True,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
        stdout=subprocess.DEVNULL,
    )
    return tag


@dataclass
class S3Store:
    container: Container
    access_key: str
    secret_key: str
    name: str

    @property
    def internal_url(self) -> str:
        """The endpoint as other containers of the sandbox reach it."""
        return f"http://{self.name}:{PORT}"

    @property
    def url(self) -> str:
        """The endpoint as the host reaches it (and, published on a bridge gateway, other
        containers)."""
        address, port = self.container.host_address(PORT)
        return f"http://{address}:{port}"

    def client(self, access_key: str = "", secret_key: str = "") -> Any:
        """A boto3 S3 client from the host; the store's first user unless keys are given."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}),
        )

    def add_user(self, name: str) -> tuple[str, str]:
        """A new S3 user of the store; returns its access and secret key."""
        access, secret = secrets.token_hex(10).upper(), secrets.token_urlsafe(30)
        result = subprocess.run(
            ["docker", "exec", "-i", self.container.name, "s3store", "user", name, access],
            input=secret,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return access, secret

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.container.inspect()["State"]
            if state["Status"] == "exited":
                raise AssertionError(f"the S3 store exited:\n{self.container.log_tail()}")
            try:
                requests.get(self.url, timeout=2)
                return
            except (requests.ConnectionError, requests.Timeout, AssertionError, IndexError):
                time.sleep(0.5)
        raise AssertionError(
            f"the S3 store did not answer in {timeout}s:\n{self.container.log_tail()}"
        )


def bridge_gateway() -> str:
    """The Docker host's address on its default bridge: containers of every network reach
    ports published there, as they would reach a store elsewhere on the network."""
    config = json.loads(
        docker("network", "inspect", "bridge", "--format", "{{json .IPAM.Config}}").stdout
    )[0]
    # An engine that found its bridge already up records only the subnet; the bridge then has
    # Docker's default address, the subnet's first (an empty address would publish on 0.0.0.0,
    # which no container can reach).
    return config.get("Gateway") or str(next(ipaddress.ip_network(config["Subnet"]).hosts()))


def start_s3store(
    sandbox: Sandbox, tmp: Path, name: str = "s3", publish_address: str = "127.0.0.1"
) -> S3Store:
    """A store named ``name`` on the sandbox network, as an arbitrary UID with a read-only root
    and no capabilities, answering when returned."""
    access, secret = secrets.token_hex(10).upper(), secrets.token_urlsafe(30)
    keys = secret_dir(tmp / f"{name}-keys", {"access_key": access, "secret_key": secret})
    container = sandbox.run(
        name,
        ensure_image(),
        mounts=[f"{sandbox.volume(name)}:/data", f"{keys}:/run/secrets/s3:ro"],
        publish=[PORT],
        publish_address=publish_address,
    )
    store = S3Store(container, access, secret, name)
    store.wait_ready()
    return store
