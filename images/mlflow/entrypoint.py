#!/opt/mlflow/bin/python
"""Entrypoint of the MLflow image: configuration from the environment, secrets from files.

Commands:
  server   (default) wait for the database, migrate if MLFLOW_DB_UPGRADE=true, converge the
           people's accounts (MLFLOW_PEOPLE_DIR) and the metrics account, serve.
  migrate  wait for the database, migrate the tracking and auth schemas, exit.

Every setting is documented in images/README.md. Secrets never reach process arguments: the
database URIs travel in the server's environment and in a 0600 file on the /tmp tmpfs.
"""

from __future__ import annotations

import configparser
import contextlib
import os
import stat
import sys
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EX_CONFIG = 78
RUNTIME_DIR = Path("/tmp/mlflow")
# Any 64-bit constant shared by every replica: migrations of concurrent starts run one by one.
MIGRATION_LOCK_ID = 0x6D6C666C6F77
AUTH_PERMISSIONS = ("READ", "EDIT", "MANAGE", "NO_PERMISSIONS")
# MLflow's password policy; checked here so the error names our setting before the server starts.
MIN_ADMIN_PASSWORD_LENGTH = 12
AUTH_APP = "mlops-kit-auth"
LOCAL_HOSTS = ("localhost", "localhost:*", "127.0.0.1", "127.0.0.1:*", "[::1]", "[::1]:*")


class ConfigError(Exception):
    """A setting is missing or wrong; the message names it and says how to fix it."""


def _truthy(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name}={raw!r} must be true or false")


def _int(env: Mapping[str, str], name: str, default: int, minimum: int, maximum: int) -> int:
    raw = env.get(name, "").strip() or str(default)
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} must be a whole number") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name}={value} must be between {minimum} and {maximum}")
    return value


def read_secret(env: Mapping[str, str], name: str) -> str:
    """Value of NAME, or the contents of the file named by NAME_FILE; never both."""
    value, file_name = env.get(name, ""), env.get(f"{name}_FILE", "")
    if value and file_name:
        raise ConfigError(f"both {name} and {name}_FILE are set; set only one")
    if file_name:
        try:
            return Path(file_name).read_text().rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(
                f"{name}_FILE={file_name} cannot be read ({exc.strerror}); mount the secret there"
            ) from None
    return value


def require_secret(env: Mapping[str, str], name: str, why: str) -> str:
    value = read_secret(env, name)
    if not value:
        raise ConfigError(f"{name} is required (or {name}_FILE naming a file that holds it): {why}")
    return value


def normalize_db_uri(uri: str) -> str:
    """SQLAlchemy 2.1 maps postgresql:// to psycopg 3; this image ships psycopg2."""
    for prefix in ("postgresql://", "postgres://"):
        if uri.startswith(prefix):
            return "postgresql+psycopg2://" + uri[len(prefix) :]
    return uri


def build_db_uri(env: Mapping[str, str], database: str) -> str:
    host = env.get("MLFLOW_DB_HOST", "").strip()
    if not host:
        raise ConfigError(
            "MLFLOW_DB_HOST is required (or MLFLOW_BACKEND_STORE_URI_FILE): "
            "the PostgreSQL host name"
        )
    port = _int(env, "MLFLOW_DB_PORT", 5432, 1, 65535)
    user = env.get("MLFLOW_DB_USER", "").strip() or "mlflow"
    password = require_secret(env, "MLFLOW_DB_PASSWORD", f"the password of database user {user}")
    query = ""
    if sslmode := env.get("MLFLOW_DB_SSLMODE", "").strip():
        query = "?" + urllib.parse.urlencode({"sslmode": sslmode})
    quote = urllib.parse.quote
    return (
        f"postgresql+psycopg2://{quote(user, safe='')}:{quote(password, safe='')}"
        f"@{host}:{port}/{quote(database, safe='')}{query}"
    )


def expand_allowed_hosts(raw: str) -> str:
    """MLflow matches Host headers exactly, port included: let a bare name match any port."""
    entries = [entry.strip() for entry in raw.split(",") if entry.strip()]
    if not entries:
        return ""
    if "*" in entries:
        return "*"
    expanded: list[str] = list(LOCAL_HOSTS)
    for entry in entries:
        bare_ipv6 = entry.startswith("[") and entry.endswith("]")
        has_port = not bare_ipv6 and ":" in entry.rsplit("]", 1)[-1]
        for candidate in (entry,) if has_port else (entry, f"{entry}:*"):
            if candidate not in expanded:
                expanded.append(candidate)
    return ",".join(expanded)


@dataclass(frozen=True)
class Settings:
    port: int
    workers: int
    backend_store_uri: str
    db_wait_seconds: int
    db_upgrade: bool
    serve_artifacts: bool
    artifacts_destination: str
    default_artifact_root: str
    allowed_hosts: str
    cors_allowed_origins: str
    prometheus_dir: str
    enable_workspaces: bool
    auth_enabled: bool
    auth_db_uri: str = ""
    auth_admin_username: str = ""
    auth_admin_password: str = field(default="", repr=False)
    auth_default_permission: str = "READ"
    auth_cache_ttl_seconds: int = 60
    flask_secret_key: str = field(default="", repr=False)
    people_dir: str = ""
    metrics_username: str = "metrics"
    metrics_password: str = field(default="", repr=False)
    # mlops_kit_auth.roles.Account objects, read from people_dir.
    people: tuple[Any, ...] = field(default=(), repr=False)
    sftp_private_key_file: str = ""
    sftp_known_hosts_file: str = ""

    @property
    def uses_sftp(self) -> bool:
        uri = self.artifacts_destination if self.serve_artifacts else self.default_artifact_root
        return uri.startswith("sftp://")


def load_settings(env: Mapping[str, str]) -> Settings:
    """Parse and validate the whole contract; raise ConfigError naming the first problem."""
    backend = read_secret(env, "MLFLOW_BACKEND_STORE_URI")
    backend = (
        normalize_db_uri(backend)
        if backend
        else build_db_uri(env, env.get("MLFLOW_DB_NAME", "").strip() or "mlflow")
    )
    serve = _truthy(env, "MLFLOW_SERVE_ARTIFACTS", True)
    destination = env.get("MLFLOW_ARTIFACTS_DESTINATION", "").strip()
    root = env.get("MLFLOW_DEFAULT_ARTIFACT_ROOT", "").strip()
    if serve and not destination:
        raise ConfigError(
            "MLFLOW_ARTIFACTS_DESTINATION is required when MLFLOW_SERVE_ARTIFACTS=true, "
            "e.g. sftp://mlops@sftp:2222/data/artifacts"
        )
    if not serve and not root:
        raise ConfigError(
            "MLFLOW_DEFAULT_ARTIFACT_ROOT is required when MLFLOW_SERVE_ARTIFACTS=false, "
            "e.g. sftp://mlops@sftp.example.com:2222/data/artifacts"
        )
    auth = _truthy(env, "MLFLOW_AUTH_ENABLED", True)
    auth_fields: dict[str, object] = {}
    if auth:
        auth_db = read_secret(env, "MLFLOW_AUTH_DB_URI")
        auth_db = (
            normalize_db_uri(auth_db)
            if auth_db
            else build_db_uri(env, env.get("MLFLOW_AUTH_DB_NAME", "").strip() or "mlflow_auth")
        )
        if auth_db == backend:
            raise ConfigError(
                "the auth database must differ from the tracking database (their migrations "
                "clash); set MLFLOW_AUTH_DB_NAME"
            )
        permission = env.get("MLFLOW_AUTH_DEFAULT_PERMISSION", "").strip() or "READ"
        if permission not in AUTH_PERMISSIONS:
            raise ConfigError(
                f"MLFLOW_AUTH_DEFAULT_PERMISSION={permission!r} must be one of "
                + ", ".join(AUTH_PERMISSIONS)
            )
        admin_password = require_secret(
            env, "MLFLOW_AUTH_ADMIN_PASSWORD", "the password of the first admin user"
        )
        if len(admin_password) < MIN_ADMIN_PASSWORD_LENGTH:
            raise ConfigError(
                f"MLFLOW_AUTH_ADMIN_PASSWORD is {len(admin_password)} characters long; MLflow "
                f"needs at least {MIN_ADMIN_PASSWORD_LENGTH}"
            )
        auth_fields = {
            "auth_db_uri": auth_db,
            "auth_admin_username": env.get("MLFLOW_AUTH_ADMIN_USERNAME", "").strip() or "admin",
            "auth_admin_password": admin_password,
            "auth_default_permission": permission,
            "auth_cache_ttl_seconds": _int(env, "MLFLOW_AUTH_CACHE_TTL_SECONDS", 60, 0, 86400),
            "flask_secret_key": require_secret(
                env,
                "MLFLOW_FLASK_SERVER_SECRET_KEY",
                "a random string shared by every replica (signs sessions and CSRF tokens)",
            ),
            "people_dir": env.get("MLFLOW_PEOPLE_DIR", "").strip(),
            "metrics_username": env.get("MLFLOW_METRICS_USERNAME", "").strip() or "metrics",
            "metrics_password": read_secret(env, "MLFLOW_METRICS_PASSWORD"),
        }
        people_dir = str(auth_fields["people_dir"])
        if people_dir:
            auth_fields["people"] = read_people_dir(
                Path(people_dir),
                str(auth_fields["auth_admin_username"]),
                str(auth_fields["metrics_username"]),
            )
        metrics_password = str(auth_fields["metrics_password"])
        if metrics_password and len(metrics_password) < MIN_ADMIN_PASSWORD_LENGTH:
            raise ConfigError(
                f"MLFLOW_METRICS_PASSWORD is {len(metrics_password)} characters long; MLflow "
                f"needs at least {MIN_ADMIN_PASSWORD_LENGTH}"
            )
    settings = Settings(
        port=_int(env, "MLFLOW_PORT", 5000, 1024, 65535),
        workers=_int(env, "MLFLOW_WORKERS", 2, 1, 64),
        backend_store_uri=backend,
        db_wait_seconds=_int(env, "MLFLOW_DB_WAIT_SECONDS", 120, 0, 3600),
        db_upgrade=_truthy(env, "MLFLOW_DB_UPGRADE", False),
        serve_artifacts=serve,
        artifacts_destination=destination,
        default_artifact_root=root,
        allowed_hosts=expand_allowed_hosts(env.get("MLFLOW_ALLOWED_HOSTS", "")),
        cors_allowed_origins=env.get("MLFLOW_CORS_ALLOWED_ORIGINS", "").strip(),
        prometheus_dir=env.get("MLFLOW_PROMETHEUS_DIR", str(RUNTIME_DIR / "prometheus")).strip(),
        enable_workspaces=_truthy(env, "MLFLOW_ENABLE_WORKSPACES", False),
        auth_enabled=auth,
        sftp_private_key_file=env.get(
            "MLFLOW_SFTP_PRIVATE_KEY_FILE", "/etc/mlflow/sftp/id_rsa"
        ).strip(),
        sftp_known_hosts_file=env.get(
            "MLFLOW_SFTP_KNOWN_HOSTS_FILE", "/etc/mlflow/sftp/known_hosts"
        ).strip(),
        **auth_fields,  # type: ignore[arg-type]
    )
    if settings.uses_sftp:
        for name, path in (
            ("MLFLOW_SFTP_PRIVATE_KEY_FILE", settings.sftp_private_key_file),
            ("MLFLOW_SFTP_KNOWN_HOSTS_FILE", settings.sftp_known_hosts_file),
        ):
            if not os.access(path, os.R_OK):
                raise ConfigError(f"{name}={path} is not readable; mount it for sftp:// artifacts")
    return settings


def bare_host_known_hosts(text: str) -> str:
    """Add a bare 'host key' line for every '[host]:port key' line.

    pysftp looks host keys up by bare host name, so a port-qualified entry is never found.
    """
    lines: list[str] = []
    for line in text.splitlines():
        lines.append(line)
        fields = line.split()
        if len(fields) >= 3 and not line.lstrip().startswith("#"):
            hosts = fields[0].split(",")
            bare = [h[1:].split("]:", 1)[0] for h in hosts if h.startswith("[") and "]:" in h]
            if bare:
                lines.append(" ".join([",".join(bare), *fields[1:]]))
    return "\n".join(lines) + "\n"


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def prepare_runtime(settings: Settings, env: dict[str, str]) -> None:
    """Write HOME/.ssh for pysftp and the auth ini; set the server's environment."""
    home = RUNTIME_DIR / "home"
    env["HOME"] = str(home)
    (home / ".ssh").mkdir(parents=True, exist_ok=True, mode=0o700)
    if settings.uses_sftp:
        key = home / ".ssh" / "id_rsa"
        _write_private(key, Path(settings.sftp_private_key_file).read_text())
        _write_private(home / ".ssh" / "config", f"Host *\n  IdentityFile {key}\n")
        known = Path(settings.sftp_known_hosts_file).read_text()
        _write_private(home / ".ssh" / "known_hosts", bare_host_known_hosts(known))
    env["MLFLOW_BACKEND_STORE_URI"] = settings.backend_store_uri
    # MLflow's job runner (GenAI scorers, trace roll-ups) starts ~10 huey processes and ~1 GiB
    # of memory; a tracking server for classic ML does not need it, so it is opt-in here.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    if settings.auth_enabled:
        # MLflow reads the ini with interpolation on: a literal '%' (URL-quoted passwords)
        # must be written as '%%'.
        ini = configparser.ConfigParser(interpolation=None)
        ini["mlflow"] = {
            key: value.replace("%", "%%")
            for key, value in {
                "default_permission": settings.auth_default_permission,
                "database_uri": settings.auth_db_uri,
                "admin_username": settings.auth_admin_username,
                "admin_password": settings.auth_admin_password,
                "auth_cache_ttl_seconds": str(settings.auth_cache_ttl_seconds),
            }.items()
        }
        ini_path = RUNTIME_DIR / "basic_auth.ini"
        fd = os.open(ini_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            ini.write(handle)
        env["MLFLOW_AUTH_CONFIG_PATH"] = str(ini_path)
        env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = settings.flask_secret_key
    if settings.prometheus_dir:
        Path(settings.prometheus_dir).mkdir(parents=True, exist_ok=True)
    for name in list(env):
        if name.endswith("_FILE") or name in {
            "MLFLOW_DB_PASSWORD",
            "MLFLOW_AUTH_ADMIN_PASSWORD",
            "MLFLOW_METRICS_PASSWORD",
            "MLFLOW_AUTH_DB_URI",
        }:
            env.pop(name)


def server_argv(settings: Settings) -> list[str]:
    """The `mlflow server` command line; it holds no secret."""
    argv = [
        "mlflow", "server",
        "--host", "0.0.0.0",  # noqa: S104 - the container's network is the boundary
        "--port", str(settings.port),
        "--workers", str(settings.workers),
    ]  # fmt: skip
    if settings.serve_artifacts:
        argv += ["--serve-artifacts", "--artifacts-destination", settings.artifacts_destination]
    else:
        argv += ["--no-serve-artifacts", "--default-artifact-root", settings.default_artifact_root]
    if settings.allowed_hosts:
        argv += ["--allowed-hosts", settings.allowed_hosts]
    if settings.cors_allowed_origins:
        argv += ["--cors-allowed-origins", settings.cors_allowed_origins]
    if settings.prometheus_dir:
        argv += ["--expose-prometheus", settings.prometheus_dir]
    if settings.enable_workspaces:
        argv.append("--enable-workspaces")
    if settings.auth_enabled:
        # Stock basic auth plus the kit's roles (plugins/mlops_kit_auth).
        argv += ["--app-name", AUTH_APP]
    return argv


def log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} entrypoint: {message}",
          file=sys.stderr, flush=True)  # fmt: skip


def _psycopg2_dsn(uri: str) -> str:
    return uri.replace("postgresql+psycopg2://", "postgresql://", 1)


def wait_for_database(uri: str, seconds: int) -> None:
    import psycopg2

    parsed = urllib.parse.urlsplit(uri)
    where = f"{parsed.hostname}:{parsed.port or 5432}"
    deadline = time.monotonic() + seconds
    while True:
        try:
            psycopg2.connect(_psycopg2_dsn(uri), connect_timeout=5).close()
            log(f"database at {where} accepts connections")
            return
        except psycopg2.OperationalError as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if time.monotonic() >= deadline:
                raise ConfigError(
                    f"database at {where} did not accept connections within {seconds}s "
                    f"({reason}); check MLFLOW_DB_* and that PostgreSQL is up"
                ) from None
            time.sleep(2)


@contextlib.contextmanager
def migration_lock(settings: Settings) -> Iterator[None]:
    """A PostgreSQL advisory lock: replicas starting together take turns."""
    import psycopg2

    lock_conn = psycopg2.connect(_psycopg2_dsn(settings.backend_store_uri))
    try:
        lock_conn.autocommit = True
        with lock_conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_ID,))
        try:
            yield
        finally:
            with lock_conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_ID,))
    finally:
        lock_conn.close()


def migrate(settings: Settings) -> None:
    """Run `mlflow db upgrade` (and the auth DB upgrade) under the migration lock."""
    from mlflow.db import upgrade as tracking_upgrade
    from mlflow.server.auth.db.cli import upgrade as auth_upgrade

    with migration_lock(settings):
        log("migrating the tracking database")
        tracking_upgrade.callback(settings.backend_store_uri)
        if settings.auth_enabled:
            log("migrating the auth database")
            auth_upgrade.callback(settings.auth_db_uri, "head")
    log("migrations done")


def read_people_dir(directory: Path, admin_username: str, metrics_username: str) -> tuple:
    """The people list of MLFLOW_PEOPLE_DIR, checked before anything starts."""
    from mlops_kit_auth.roles import PeopleError, read_people

    if not (directory / "people.json").is_file():
        raise ConfigError(
            f"MLFLOW_PEOPLE_DIR={directory} holds no people.json; mount the people list there"
        )
    try:
        return tuple(read_people(directory, admin_username, metrics_username))
    except PeopleError as exc:
        raise ConfigError(f"MLFLOW_PEOPLE_DIR: {exc}") from None


def converge_accounts(settings: Settings) -> None:
    """People (MLFLOW_PEOPLE_DIR) and the metrics account into the auth DB, before serving."""
    from mlops_kit_auth.people import converge
    from mlops_kit_auth.roles import METRICS_ROLE, PERSON_ROLES, Account

    accounts: list[Account] = list(settings.people)
    managed_roles = {METRICS_ROLE}
    if settings.people_dir:
        managed_roles.update(PERSON_ROLES)
    if settings.metrics_password:
        accounts.append(Account(settings.metrics_username, METRICS_ROLE, settings.metrics_password))
    with migration_lock(settings):
        report = converge(
            settings.auth_db_uri, accounts, managed_roles, {settings.auth_admin_username}
        )
    log(f"accounts: {report}")


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "server"
    if command not in {"server", "migrate"}:
        print(f"error: unknown command {command!r}; use 'server' or 'migrate'", file=sys.stderr)
        return EX_CONFIG
    env = dict(os.environ)
    try:
        settings = load_settings(env)
        if not os.access("/tmp", os.W_OK):
            raise ConfigError("/tmp is not writable; mount a tmpfs there (docker: --tmpfs /tmp)")
        RUNTIME_DIR.mkdir(mode=0o700, exist_ok=True)
        wait_for_database(settings.backend_store_uri, settings.db_wait_seconds)
        if command == "migrate" or settings.db_upgrade:
            migrate(settings)
        if command == "migrate":
            return 0
        if settings.auth_enabled:
            converge_accounts(settings)
        prepare_runtime(settings, env)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return EX_CONFIG
    argv_server = server_argv(settings)
    log("starting: " + " ".join(argv_server))
    os.execvpe(argv_server[0], argv_server, env)  # noqa: S606 - fixed argv, no shell
    return 0  # pragma: no cover - exec does not return


if __name__ == "__main__":
    sys.exit(main(sys.argv))
