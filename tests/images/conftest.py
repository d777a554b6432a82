"""Fixtures that start the real images, hardened, under random UIDs."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
from mlopskit.versions import IMAGE_NAMES, ImageSet, image_set

from tests.support.docker import Container, Sandbox, docker, new_secret, secret_dir
from tests.support.keys import KeyPair, generate_keypair

pytestmark = pytest.mark.docker

# The one origin whose pages may call the `mlflow_server` fixture's API (test_mlflow.py, CORS).
CORS_ALLOWED_ORIGIN = "https://notebooks.example.com"


@pytest.fixture(scope="session")
def images() -> ImageSet:
    refs = image_set()
    for name in IMAGE_NAMES:
        if docker("image", "inspect", refs.ref(name), check=False).returncode != 0:
            pytest.fail(f"image {refs.ref(name)} is missing: run `make images` first")
    return refs


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox(prefix=f"mlkit-it-{uuid.uuid4().hex[:8]}")
    yield box
    box.destroy()


@dataclass
class Postgres:
    container: Container
    secrets: dict[str, str]
    secrets_dir: Path

    @property
    def port(self) -> int:
        return self.container.host_port(5432)


def start_postgres(
    sandbox: Sandbox,
    images: ImageSet,
    tmp: Path,
    name: str = "db",
    *,
    env: dict[str, str] | None = None,
    mounts: tuple[str, ...] = (),
    aliases: tuple[str, ...] = (),
) -> Postgres:
    """A hardened PostgreSQL with its own volume and secrets; ``env`` and ``mounts`` add more
    (e.g. TLS files), ``aliases`` more names on the network. Healthy when returned."""
    values = {"superuser": new_secret(), "app": new_secret()}
    directory = secret_dir(tmp / f"{name}-secrets", values)
    container = sandbox.run(
        name,
        images.ref("postgresql"),
        env={
            "POSTGRESQL_PASSWORD_FILE": "/run/secrets/db/superuser",
            "POSTGRESQL_APP_PASSWORD_FILE": "/run/secrets/db/app",
            **(env or {}),
        },
        mounts=[
            f"{sandbox.volume(name)}:/var/lib/postgresql/data",
            f"{directory}:/run/secrets/db:ro",
            *mounts,
        ],
        publish=[5432],
        aliases=aliases,
    )
    container.wait_healthy()
    return Postgres(container, values, directory)


@pytest.fixture(scope="module")
def postgres(
    sandbox: Sandbox, images: ImageSet, tmp_path_factory: pytest.TempPathFactory
) -> Postgres:
    return start_postgres(sandbox, images, tmp_path_factory.mktemp("pg"))


@dataclass
class Sftp:
    container: Container
    access_dir: Path
    writer: KeyPair  # dvc rw
    reader: KeyPair  # dvc ro
    mlflow_key: KeyPair  # artifacts rw

    @property
    def port(self) -> int:
        return self.container.host_port(2222)

    def host_public_key(self) -> str:
        return self.container.exec("cat", "/data/.host-keys/ssh_host_ecdsa_key.pub").strip()


def write_access_dir(directory: Path, grants: dict[str, tuple[str, str, KeyPair]]) -> Path:
    """An SFTP_ACCESS directory: one file per principal, lines '<area> <mode> <key>'."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, (area, mode, pair) in grants.items():
        (directory / name).write_text(f"{area} {mode} {pair.public_line}\n")
    directory.chmod(0o755)
    return directory


@pytest.fixture(scope="module")
def sftp(sandbox: Sandbox, images: ImageSet, tmp_path_factory: pytest.TempPathFactory) -> Sftp:
    return make_sftp(sandbox, images, tmp_path_factory.mktemp("sftp"))


def make_sftp(sandbox: Sandbox, images: ImageSet, tmp: Path, volume: str | None = None) -> Sftp:
    """SFTP container "sftp" with alice (DVC, rw), bob (DVC, ro) and MLflow's key (artifacts),
    on ``volume`` when given (else a new one). Healthy when returned."""
    writer = generate_keypair(tmp / "alice", "ed25519")
    reader = generate_keypair(tmp / "bob", "ed25519")
    mlflow_key = generate_keypair(tmp / "mlflow", "rsa")
    access_dir = write_access_dir(
        tmp / "access",
        {
            "alice": ("dvc", "rw", writer),
            "bob": ("dvc", "ro", reader),
            "mlflow": ("artifacts", "rw", mlflow_key),
        },
    )
    # A file without a final newline, as a Kubernetes ConfigMap value has none.
    (access_dir / "alice").write_text(f"dvc rw {writer.public_line}")
    container = start_sftp(sandbox, images, "sftp", access_dir, volume=volume)
    return Sftp(container, access_dir, writer, reader, mlflow_key)


def start_sftp(
    sandbox: Sandbox,
    images: ImageSet,
    name: str,
    access: Path,
    *mounts: str,
    volume: str | None = None,
) -> Container:
    """A hardened SFTP container on ``volume`` (else a new one of its own) with the access
    list ``access`` (a file or a directory); ``mounts`` adds more (e.g. host keys). Healthy
    when returned."""
    data = volume or sandbox.volume(name)
    container = sandbox.run(
        name,
        images.ref("sftp"),
        mounts=[f"{data}:/data", f"{access}:/etc/sftp/access:ro", *mounts],
        publish=[2222],
    )
    container.wait_healthy()
    return container


@dataclass
class Mlflow:
    container: Container
    secrets: dict[str, str]
    username: str = "admin"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.container.host_port(5000)}"

    @property
    def auth(self) -> tuple[str, str]:
        return (self.username, self.secrets["admin"])


def sftp_client_files(directory: Path, sftp: Sftp) -> Path:
    """The MLflow→SFTP key and known_hosts, as a deploy target mounts them."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    (directory / "id_rsa").write_bytes(sftp.mlflow_key.private.read_bytes())
    lines = [
        f"[sftp]:2222 {' '.join(key.split()[:2])}"
        for key in sftp.container.exec(
            "sh", "-c", "cat /data/.host-keys/ssh_host_*_key.pub"
        ).splitlines()
    ]
    (directory / "known_hosts").write_text("\n".join(lines) + "\n")
    for name in ("id_rsa", "known_hosts"):
        (directory / name).chmod(0o644)
    return directory


def server_env(db_host: str) -> dict[str, str]:
    """What both targets give every MLflow server: its database (migrated at start here) and the
    auth secrets, files `db`, `admin` and `flask` mounted at /run/secrets/mlflow."""
    return {
        "MLFLOW_DB_HOST": db_host,
        "MLFLOW_DB_PASSWORD_FILE": "/run/secrets/mlflow/db",
        "MLFLOW_DB_UPGRADE": "true",
        "MLFLOW_AUTH_ADMIN_PASSWORD_FILE": "/run/secrets/mlflow/admin",
        "MLFLOW_FLASK_SERVER_SECRET_KEY_FILE": "/run/secrets/mlflow/flask",
    }


@contextlib.contextmanager
def tracking_credentials(url: str, username: str, password: str) -> Iterator[None]:
    """The stock client's credentials variables set to a user's, and the tracking URI to
    ``url``, for the block; the variables are restored after it."""
    names = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(zip(names, (username, password), strict=True))
    mlflow.set_tracking_uri(url)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def start_mlflow(
    sandbox: Sandbox,
    images: ImageSet,
    postgres: Postgres,
    sftp: Sftp,
    tmp: Path,
    env: dict[str, str] | None = None,
) -> Mlflow:
    """The MLflow image against ``postgres`` and ``sftp``, artifacts proxied, as both targets
    run it; ``env`` adds or overrides settings. Waits until it is healthy."""
    values = {"db": postgres.secrets["app"], "admin": new_secret(), "flask": new_secret()}
    secrets_dir = secret_dir(tmp / "secrets", values)
    ssh_dir = sftp_client_files(tmp / "sftp", sftp)
    container = sandbox.run(
        "mlflow",
        images.ref("mlflow"),
        env={
            **server_env("db"),
            "MLFLOW_ARTIFACTS_DESTINATION": "sftp://mlops@sftp:2222/data/artifacts",
            **(env or {}),
        },
        mounts=[f"{secrets_dir}:/run/secrets/mlflow:ro", f"{ssh_dir}:/etc/mlflow/sftp:ro"],
        publish=[5000],
    )
    container.wait_healthy()
    return Mlflow(container, values)


@pytest.fixture(scope="module")
def mlflow_server(
    sandbox: Sandbox,
    images: ImageSet,
    postgres: Postgres,
    sftp: Sftp,
    tmp_path_factory: pytest.TempPathFactory,
) -> Mlflow:
    env = {
        "MLFLOW_ALLOWED_HOSTS": "mlflow.example.com,mlflow",
        "MLFLOW_CORS_ALLOWED_ORIGINS": CORS_ALLOWED_ORIGIN,
    }
    return start_mlflow(sandbox, images, postgres, sftp, tmp_path_factory.mktemp("mlflow"), env)


@dataclass
class PeopleServer:
    container: Container
    passwords: dict[str, str]  # admin, metrics and the people's

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.container.host_port(5000)}"


def start_mlflow_with_people(
    sandbox: Sandbox,
    images: ImageSet,
    sftp: Sftp,
    tmp: Path,
    name: str,
    people_dir: Path,
    passwords: dict[str, str],
    env: dict[str, str] | None = None,
) -> PeopleServer:
    """An MLflow server as both targets run it, on a PostgreSQL of its own (``db-<name>``):
    the people of ``people_dir`` and a metrics account, artifacts proxied to ``sftp``.
    ``passwords`` gains the generated admin and metrics passwords."""
    postgres = start_postgres(sandbox, images, tmp, name=f"db-{name}")
    passwords.update(admin=new_secret(), metrics=new_secret())
    secrets = secret_dir(
        tmp / "secrets",
        {
            "db": postgres.secrets["app"],
            "admin": passwords["admin"],
            "flask": new_secret(),
            "metrics": passwords["metrics"],
        },
    )
    container = sandbox.run(
        name,
        images.ref("mlflow"),
        env={
            "MLFLOW_DB_HOST": f"db-{name}",
            "MLFLOW_DB_PASSWORD_FILE": "/run/secrets/mlflow/db",
            "MLFLOW_DB_UPGRADE": "true",
            "MLFLOW_AUTH_ADMIN_PASSWORD_FILE": "/run/secrets/mlflow/admin",
            "MLFLOW_FLASK_SERVER_SECRET_KEY_FILE": "/run/secrets/mlflow/flask",
            "MLFLOW_METRICS_PASSWORD_FILE": "/run/secrets/mlflow/metrics",
            "MLFLOW_PEOPLE_DIR": "/run/secrets/people",
            "MLFLOW_ARTIFACTS_DESTINATION": "sftp://mlops@sftp:2222/data/artifacts",
            **(env or {}),
        },
        mounts=[
            f"{secrets}:/run/secrets/mlflow:ro",
            f"{people_dir}:/run/secrets/people:ro",
            f"{sftp_client_files(tmp / 'sftp', sftp)}:/etc/mlflow/sftp:ro",
        ],
        publish=[5000],
    )
    container.wait_healthy()
    return PeopleServer(container, passwords)
