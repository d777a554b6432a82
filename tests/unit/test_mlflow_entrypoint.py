"""Pure logic of the MLflow image's entrypoint: parsing the contract, never leaking secrets."""

from __future__ import annotations

import importlib.util
import re
import shlex
import sys
from pathlib import Path
from types import ModuleType

import pytest

ENTRYPOINT = Path(__file__).resolve().parents[2] / "images" / "mlflow" / "entrypoint.py"


@pytest.fixture(scope="module")
def ep() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mlflow_entrypoint", ENTRYPOINT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    key = tmp_path / "id_rsa"
    known = tmp_path / "known_hosts"
    key.write_text("key")
    known.write_text("[sftp]:2222 ssh-ed25519 AAAA\n")
    return {
        "MLFLOW_DB_HOST": "db",
        "MLFLOW_DB_PASSWORD": "p@ss:w/rd%",
        "MLFLOW_AUTH_ADMIN_PASSWORD": "admin-password-long",
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "flask-secret",
        "MLFLOW_ARTIFACTS_DESTINATION": "sftp://mlops@sftp:2222/data/artifacts",
        "MLFLOW_SFTP_PRIVATE_KEY_FILE": str(key),
        "MLFLOW_SFTP_KNOWN_HOSTS_FILE": str(known),
    }


def test_db_uri_is_built_for_psycopg2_with_quoted_credentials(ep, env) -> None:
    settings = ep.load_settings(env)
    assert (
        settings.backend_store_uri
        == "postgresql+psycopg2://mlflow:p%40ss%3Aw%2Frd%25@db:5432/mlflow"
    )
    assert settings.auth_db_uri.endswith("@db:5432/mlflow_auth")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u:p@h/db", "postgresql+psycopg2://u:p@h/db"),
        ("postgres://u:p@h/db", "postgresql+psycopg2://u:p@h/db"),
        ("postgresql+psycopg2://u:p@h/db", "postgresql+psycopg2://u:p@h/db"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
    ],
)
def test_postgresql_uris_get_the_psycopg2_driver(ep, given: str, expected: str) -> None:
    assert ep.normalize_db_uri(given) == expected


def test_secret_from_file_wins_and_both_is_an_error(ep, env, tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    del env["MLFLOW_DB_PASSWORD"]
    env["MLFLOW_DB_PASSWORD_FILE"] = str(secret)
    assert ":from-file@" in ep.load_settings(env).backend_store_uri
    env["MLFLOW_DB_PASSWORD"] = "inline"
    with pytest.raises(ep.ConfigError, match="both MLFLOW_DB_PASSWORD and MLFLOW_DB_PASSWORD_FILE"):
        ep.load_settings(env)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"MLFLOW_DB_HOST": ""}, "MLFLOW_DB_HOST is required"),
        ({"MLFLOW_DB_PASSWORD": ""}, "MLFLOW_DB_PASSWORD is required"),
        ({"MLFLOW_DB_PASSWORD": "", "MLFLOW_DB_PASSWORD_FILE": "/nope"}, "cannot be read"),
        ({"MLFLOW_AUTH_ADMIN_PASSWORD": "short"}, "5 characters long"),
        ({"MLFLOW_FLASK_SERVER_SECRET_KEY": ""}, "MLFLOW_FLASK_SERVER_SECRET_KEY is required"),
        ({"MLFLOW_AUTH_DB_NAME": "mlflow"}, "auth database must differ"),
        ({"MLFLOW_AUTH_DEFAULT_PERMISSION": "ALL"}, "must be one of READ"),
        ({"MLFLOW_ARTIFACTS_DESTINATION": ""}, "MLFLOW_ARTIFACTS_DESTINATION is required"),
        ({"MLFLOW_SERVE_ARTIFACTS": "false"}, "MLFLOW_DEFAULT_ARTIFACT_ROOT is required"),
        ({"MLFLOW_SERVE_ARTIFACTS": "maybe"}, "must be true or false"),
        ({"MLFLOW_PORT": "80"}, "between 1024 and 65535"),
        ({"MLFLOW_WORKERS": "0"}, "between 1 and 64"),
        ({"MLFLOW_DB_POOL_SIZE": "1"}, "MLFLOW_DB_POOL_SIZE=1 must be between 2 and 100"),
        ({"MLFLOW_DB_MAX_OVERFLOW": "-1"}, "MLFLOW_DB_MAX_OVERFLOW=-1 must be between 0 and 100"),
        (
            {"MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW": "0"},
            "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW is set; set MLFLOW_DB_MAX_OVERFLOW instead",
        ),
        ({"MLFLOW_SQLALCHEMYSTORE_POOL_SIZE": "9"}, "set MLFLOW_DB_POOL_SIZE instead"),
        (
            {"MLFLOW_SQLALCHEMYSTORE_POOLCLASS": "NullPool"},
            "MLFLOW_SQLALCHEMYSTORE_POOLCLASS is set",
        ),
        ({"MLFLOW_SFTP_PRIVATE_KEY_FILE": "/nope"}, "MLFLOW_SFTP_PRIVATE_KEY_FILE=/nope"),
    ],
)
def test_bad_settings_name_the_variable(ep, env, change: dict[str, str], message: str) -> None:
    env.update(change)
    with pytest.raises(ep.ConfigError, match=message):
        ep.load_settings(env)


def test_auth_off_needs_no_auth_secrets(ep, env) -> None:
    for name in ("MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"):
        del env[name]
    env["MLFLOW_AUTH_ENABLED"] = "false"
    settings = ep.load_settings(env)
    argv = ep.server_argv(settings)
    assert argv[argv.index("--app-name") + 1] == "mlops-kit"


def test_sftp_files_are_only_needed_for_sftp_uris(ep, env) -> None:
    env["MLFLOW_ARTIFACTS_DESTINATION"] = "file:///tmp/artifacts"
    env["MLFLOW_SFTP_PRIVATE_KEY_FILE"] = "/nope"
    assert not ep.load_settings(env).uses_sftp


@pytest.mark.parametrize(
    ("raw", "expected_extra"),
    [
        ("mlflow.example.com", ["mlflow.example.com", "mlflow.example.com:*"]),
        ("mlflow.example.com:443", ["mlflow.example.com:443"]),
        ("[fd00::1]", ["[fd00::1]", "[fd00::1]:*"]),
        (" a , b:80 ", ["a", "a:*", "b:80"]),
    ],
)
def test_allowed_hosts_match_any_port_unless_one_is_given(ep, raw: str, expected_extra) -> None:
    hosts = ep.expand_allowed_hosts(raw).split(",")
    assert hosts[: len(ep.LOCAL_HOSTS)] == list(ep.LOCAL_HOSTS)
    assert hosts[len(ep.LOCAL_HOSTS) :] == expected_extra


def test_empty_allowed_hosts_keep_mlflow_defaults_and_star_stays_star(ep) -> None:
    assert ep.expand_allowed_hosts(" , ") == ""
    assert ep.expand_allowed_hosts("a,*") == "*"


def test_known_hosts_get_bare_host_twins_for_pysftp(ep) -> None:
    text = "[sftp]:2222 ssh-ed25519 AAAA\n[a]:22,[b]:2222 ssh-rsa BBBB\nplain ssh-rsa CCCC\n# c\n"
    lines = ep.bare_host_known_hosts(text).splitlines()
    assert "sftp ssh-ed25519 AAAA" in lines
    assert "a,b ssh-rsa BBBB" in lines
    assert lines.count("plain ssh-rsa CCCC") == 1
    assert "[sftp]:2222 ssh-ed25519 AAAA" in lines


def test_server_argv_holds_no_secret(ep, env) -> None:
    settings = ep.load_settings(env)
    argv = " ".join(ep.server_argv(settings))
    for secret in ("p@ss", "p%40ss", "admin-password-long", "flask-secret"):
        assert secret not in argv
    assert "--serve-artifacts" in argv
    assert "--app-name mlops-kit-auth" in argv


def test_runtime_files_keep_secrets_private_and_escape_percent(
    ep, env, tmp_path, monkeypatch
) -> None:
    monkeypatch.setattr(ep, "RUNTIME_DIR", tmp_path / "runtime")
    (tmp_path / "runtime").mkdir()
    settings = ep.load_settings(env)
    server_env = dict(env, MLFLOW_DB_PASSWORD_FILE="/x")
    ep.prepare_runtime(settings, server_env)
    ini = tmp_path / "runtime" / "basic_auth.ini"
    assert ini.stat().st_mode & 0o777 == 0o600
    assert "p%%40ss%%3Aw%%2Frd%%25" in ini.read_text()
    assert "MLFLOW_DB_PASSWORD" not in server_env
    assert "MLFLOW_DB_PASSWORD_FILE" not in server_env
    assert server_env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    ssh = tmp_path / "runtime" / "home" / ".ssh"
    assert (ssh / "id_rsa").stat().st_mode & 0o777 == 0o600
    assert "sftp ssh-ed25519 AAAA" in (ssh / "known_hosts").read_text()


def test_pool_sizes_reach_mlflow_and_the_uris_name_the_pool_plugin(
    ep, env, tmp_path, monkeypatch
) -> None:
    monkeypatch.setattr(ep, "RUNTIME_DIR", tmp_path / "runtime")
    (tmp_path / "runtime").mkdir()
    env.update(MLFLOW_DB_POOL_SIZE="3", MLFLOW_DB_MAX_OVERFLOW="0", MLFLOW_DB_SSLMODE="require")
    settings = ep.load_settings(env)
    server_env = dict(env)
    ep.prepare_runtime(settings, server_env)
    assert server_env["MLFLOW_SQLALCHEMYSTORE_POOL_SIZE"] == "3"
    assert server_env["MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW"] == "0"
    assert server_env["MLFLOW_BACKEND_STORE_URI"].endswith(
        "/mlflow?sslmode=require&plugin=mlops_kit_pool"
    )
    ini = (tmp_path / "runtime" / "basic_auth.ini").read_text()
    assert "/mlflow_auth?sslmode=require&plugin=mlops_kit_pool" in ini
    # The checks before the server (psycopg2) get the URI without the plugin.
    assert "plugin" not in settings.backend_store_uri
    assert (
        ep.with_pool_plugin(ep.with_pool_plugin("sqlite:///x"))
        == "sqlite:///x?plugin=mlops_kit_pool"
    )


def test_pool_defaults_are_the_contracts(ep, env) -> None:
    settings = ep.load_settings(env)
    assert (settings.db_pool_size, settings.db_max_overflow) == (2, 0)


def test_pool_plugin_sets_both_sizes_zero_included(monkeypatch) -> None:
    """An engine made from a URI naming the plugin gets the exact sizes, an overflow of 0
    included (MLflow alone drops it: SQLAlchemy's default of 10 would apply)."""
    from sqlalchemy import create_engine
    from sqlalchemy.dialects import plugins

    monkeypatch.syspath_prepend(str(ENTRYPOINT.parent / "plugins"))
    plugins.register("mlops_kit_pool", "mlops_kit_pool", "PoolSizePlugin")
    monkeypatch.setenv("MLFLOW_SQLALCHEMYSTORE_POOL_SIZE", "1")
    monkeypatch.setenv("MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW", "0")
    uri = "postgresql+psycopg2://u:p@db/x?sslmode=require"
    engine = create_engine(ep_with_plugin(uri))
    assert (engine.pool.size(), engine.pool._max_overflow) == (1, 0)
    assert engine.url.query == {"sslmode": "require"}  # the plugin name is consumed
    stock = create_engine(uri, pool_size=1)  # what MLflow passes for MAX_OVERFLOW=0
    assert stock.pool._max_overflow == 10


def ep_with_plugin(uri: str) -> str:
    return f"{uri}&plugin=mlops_kit_pool"


# ---------- TLS to the database and the read replica ----------

CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


@pytest.fixture
def ca_file(tmp_path: Path) -> Path:
    path = tmp_path / "db ca" / "ca.crt"  # a space: the URI must quote the path
    path.parent.mkdir()
    path.write_text(CA_PEM)
    return path


def libpq_options(ep, uri: str) -> dict[str, str]:
    """What libpq itself reads from the URI (psycopg2 hands it over unchanged)."""
    from psycopg2.extensions import parse_dsn

    return parse_dsn(uri.replace("postgresql+psycopg2://", "postgresql://", 1))


def test_verify_full_with_a_ca_reaches_libpq_for_both_databases(ep, env, ca_file) -> None:
    env.update(MLFLOW_DB_SSLMODE="verify-full", MLFLOW_DB_SSLROOTCERT=str(ca_file))
    settings = ep.load_settings(env)
    for uri, dbname in (
        (settings.backend_store_uri, "mlflow"),
        (settings.auth_db_uri, "mlflow_auth"),
    ):
        options = libpq_options(ep, uri)
        assert options["sslmode"] == "verify-full"
        assert options["sslrootcert"] == str(ca_file)
        assert (options["host"], options["dbname"], options["password"]) == (
            "db", dbname, "p@ss:w/rd%",
        )  # fmt: skip


@pytest.mark.parametrize("sslmode", ["verify-ca", "verify-full"])
def test_verifying_without_a_ca_names_the_setting(ep, env, sslmode: str) -> None:
    """libpq would fail later with 'root certificate file ... does not exist'."""
    env["MLFLOW_DB_SSLMODE"] = sslmode
    with pytest.raises(
        ep.ConfigError, match=f"MLFLOW_DB_SSLMODE={sslmode} .* MLFLOW_DB_SSLROOTCERT"
    ):
        ep.load_settings(env)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"MLFLOW_DB_SSLROOTCERT": "/nope/ca.crt"}, "MLFLOW_DB_SSLROOTCERT=/nope/ca.crt cannot"),
        ({"MLFLOW_DB_SSLMODE": "prefer"}, "without TLS; set MLFLOW_DB_SSLMODE=verify-full"),
        ({"MLFLOW_DB_SSLMODE": ""}, "MLFLOW_DB_SSLMODE=''"),
        ({"MLFLOW_DB_SSLMODE": "verify_full"}, "MLFLOW_DB_SSLMODE='verify_full' must be one of"),
    ],
)  # fmt: skip
def test_bad_tls_settings_name_the_variable(
    ep, env, ca_file, change: dict[str, str], message: str
) -> None:
    env.update(MLFLOW_DB_SSLMODE="verify-full", MLFLOW_DB_SSLROOTCERT=str(ca_file))
    env.update(change)
    with pytest.raises(ep.ConfigError, match=message):
        ep.load_settings(env)


def test_a_ca_file_must_hold_a_pem_certificate(ep, env, tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.der"
    not_pem.write_bytes(b"\x30\x82\x01\x0a")
    env.update(MLFLOW_DB_SSLMODE="verify-full", MLFLOW_DB_SSLROOTCERT=str(not_pem))
    with pytest.raises(ep.ConfigError, match="holds no PEM certificate"):
        ep.load_settings(env)


def test_require_may_add_a_ca(ep, env, ca_file) -> None:
    env.update(MLFLOW_DB_SSLMODE="require", MLFLOW_DB_SSLROOTCERT=str(ca_file))
    assert libpq_options(ep, ep.load_settings(env).backend_store_uri)["sslrootcert"] == str(ca_file)


def test_no_tls_settings_leave_the_uri_as_before(ep, env) -> None:
    assert "?" not in ep.load_settings(env).backend_store_uri


def test_read_replica_shares_credentials_database_and_tls(ep, env, ca_file) -> None:
    env.update(
        MLFLOW_DB_SSLMODE="verify-full",
        MLFLOW_DB_SSLROOTCERT=str(ca_file),
        MLFLOW_DB_READ_REPLICA_HOST="db-ro.example.com",
        MLFLOW_DB_READ_REPLICA_PORT="6432",
    )
    settings = ep.load_settings(env)
    replica = libpq_options(ep, settings.read_replica_uri)
    primary = libpq_options(ep, settings.backend_store_uri)
    assert (replica["host"], replica["port"]) == ("db-ro.example.com", "6432")
    assert (primary["host"], primary["port"]) == ("db", "5432")
    for key in ("user", "password", "dbname", "sslmode", "sslrootcert"):
        assert replica[key] == primary[key], key
    assert "p@ss" not in repr(settings)


def test_read_replica_reaches_mlflow_through_the_environment_only(
    ep, env, tmp_path, monkeypatch
) -> None:
    monkeypatch.setattr(ep, "RUNTIME_DIR", tmp_path / "runtime")
    (tmp_path / "runtime").mkdir()
    env["MLFLOW_DB_READ_REPLICA_HOST"] = "db-ro"
    settings = ep.load_settings(env)
    argv = " ".join(ep.server_argv(settings))
    assert "db-ro" not in argv
    assert "p%40ss" not in argv
    server_env = dict(env)
    ep.prepare_runtime(settings, server_env)
    assert server_env[ep.READ_REPLICA_ENV] == ep.with_pool_plugin(settings.read_replica_uri)
    assert "@db-ro:5432/mlflow" in settings.read_replica_uri


def test_no_read_replica_drops_a_stray_mlflow_variable(ep, env, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(ep, "RUNTIME_DIR", tmp_path / "runtime")
    (tmp_path / "runtime").mkdir()
    server_env = dict(env, MLFLOW_READ_REPLICA_BACKEND_STORE_URI="postgresql://x")
    ep.prepare_runtime(ep.load_settings(env), server_env)
    assert ep.READ_REPLICA_ENV not in server_env


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"MLFLOW_DB_READ_REPLICA_HOST": "db-ro", "MLFLOW_DB_READ_REPLICA_PORT": "0"},
            "MLFLOW_DB_READ_REPLICA_PORT=0 must be between 1 and 65535",
        ),
        (
            {
                "MLFLOW_DB_READ_REPLICA_HOST": "db-ro",
                "MLFLOW_DB_HOST": "",
                "MLFLOW_BACKEND_STORE_URI": "postgresql://u:p@h/db",
                "MLFLOW_AUTH_ENABLED": "false",
            },
            "MLFLOW_DB_READ_REPLICA_HOST works with the MLFLOW_DB_\\* parts",
        ),
    ],
)
def test_bad_read_replica_settings_name_the_variable(ep, env, change, message) -> None:
    env.update(change)
    with pytest.raises(ep.ConfigError, match=message):
        ep.load_settings(env)


@pytest.fixture
def s3_env(env, tmp_path: Path) -> dict[str, str]:
    credentials = tmp_path / "credentials"
    credentials.write_text("[default]\naws_access_key_id = A\naws_secret_access_key = S\n")
    ca = tmp_path / "s3-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    return dict(
        env,
        MLFLOW_ARTIFACTS_DESTINATION="s3://team-bucket/mlflow/artifacts/",
        MLFLOW_S3_ENDPOINT_URL="https://rgw.example.com",
        MLFLOW_S3_CREDENTIALS_FILE=str(credentials),
        MLFLOW_S3_CA_FILE=str(ca),
        MLFLOW_SFTP_PRIVATE_KEY_FILE="/nope",  # not needed for s3://
    )


def test_s3_settings_reach_boto3_through_files_and_the_environment(
    ep, s3_env, tmp_path, monkeypatch
) -> None:
    monkeypatch.setattr(ep, "RUNTIME_DIR", tmp_path / "runtime")
    (tmp_path / "runtime").mkdir()
    settings = ep.load_settings(s3_env)
    assert settings.uses_s3
    assert not settings.uses_sftp
    assert ep.s3_bucket_and_prefix(settings.artifact_uri) == ("team-bucket", "mlflow/artifacts")
    server_env = dict(s3_env)
    ep.prepare_runtime(settings, server_env)
    assert server_env["AWS_SHARED_CREDENTIALS_FILE"] == s3_env["MLFLOW_S3_CREDENTIALS_FILE"]
    assert server_env["AWS_CA_BUNDLE"] == s3_env["MLFLOW_S3_CA_FILE"]
    assert server_env["MLFLOW_S3_ENDPOINT_URL"] == "https://rgw.example.com"
    assert server_env["MLFLOW_BOTO_CLIENT_ADDRESSING_STYLE"] == "path"
    assert server_env["AWS_REQUEST_CHECKSUM_CALCULATION"] == "when_required"
    assert server_env["AWS_RESPONSE_CHECKSUM_VALIDATION"] == "when_required"
    argv = ep.server_argv(settings)
    assert argv[argv.index("--artifacts-destination") + 1] == s3_env["MLFLOW_ARTIFACTS_DESTINATION"]


def test_a_checksum_setting_of_the_operator_wins(ep, s3_env, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(ep, "RUNTIME_DIR", tmp_path / "runtime")
    (tmp_path / "runtime").mkdir()
    server_env = dict(s3_env, AWS_REQUEST_CHECKSUM_CALCULATION="when_supported")
    ep.prepare_runtime(ep.load_settings(s3_env), server_env)
    assert server_env["AWS_REQUEST_CHECKSUM_CALCULATION"] == "when_supported"


def test_an_empty_endpoint_means_aws_and_sftp_needs_no_s3_variables(
    ep, env, s3_env, tmp_path, monkeypatch
) -> None:
    monkeypatch.setattr(ep, "RUNTIME_DIR", tmp_path / "runtime")
    (tmp_path / "runtime").mkdir()
    s3_env["MLFLOW_S3_ENDPOINT_URL"] = ""
    server_env = dict(s3_env)
    ep.prepare_runtime(ep.load_settings(s3_env), server_env)
    assert "MLFLOW_S3_ENDPOINT_URL" not in server_env  # boto3 would take "" for an endpoint
    sftp_env = dict(env, MLFLOW_S3_ENDPOINT_URL="https://rgw.example.com")
    ep.prepare_runtime(ep.load_settings(env), sftp_env)
    assert not {"MLFLOW_S3_ENDPOINT_URL", "AWS_SHARED_CREDENTIALS_FILE"} & set(sftp_env)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"MLFLOW_ARTIFACTS_DESTINATION": "s3://"}, "names no bucket; use s3://BUCKET"),
        (
            {"MLFLOW_S3_CREDENTIALS_FILE": "/nope/credentials"},
            "MLFLOW_S3_CREDENTIALS_FILE=/nope/credentials is not readable",
        ),
        ({"MLFLOW_S3_CA_FILE": "/nope/ca.pem"}, "MLFLOW_S3_CA_FILE=/nope/ca.pem is not readable"),
        (
            {"MLFLOW_BOTO_CLIENT_ADDRESSING_STYLE": "dns"},
            "MLFLOW_BOTO_CLIENT_ADDRESSING_STYLE='dns' must be one of path, virtual, auto",
        ),
    ],
)
def test_bad_s3_settings_name_the_variable(ep, s3_env, change, message) -> None:
    s3_env.update(change)
    with pytest.raises(ep.ConfigError, match=re.escape(message)):
        ep.load_settings(s3_env)


@pytest.fixture
def dvc_s3_env(s3_env, tmp_path: Path) -> dict[str, str]:
    """s3_env with the people's DVC remote in a bucket of its own, and two people."""
    people = tmp_path / "people"
    people.mkdir()
    (people / "people.json").write_text(
        '[{"name": "alice", "role": "editor", "dvc": "write"},'
        ' {"name": "bob", "role": "reader", "dvc": "read"}]'
    )
    for name in ("alice", "bob"):
        (people / f"{name}.password").write_text(f"{name}-password-long\n")
    return dict(
        s3_env,
        MLFLOW_PEOPLE_DIR=str(people),
        MLFLOW_DVC_S3_REMOTE="s3://team-data/dvc",
        MLFLOW_DVC_S3_ACCOUNT="lab",
    )


def test_the_dvc_remote_policy_names_each_persons_s3_user(ep, dvc_s3_env) -> None:
    from mlops_kit_auth.dvc_s3 import people_bucket_policy

    settings = ep.load_settings(dvc_s3_env)
    assert settings.dvc_s3_remote == "s3://team-data/dvc"
    bucket, prefix = ep.s3_bucket_and_prefix(settings.dvc_s3_remote)
    policy = people_bucket_policy(bucket, prefix, settings.people, settings.dvc_s3_account)
    writers = next(s for s in policy["Statement"] if s["Sid"] == "DvcWrite")
    assert writers["Principal"] == {"AWS": ["arn:aws:iam::lab:user/alice"]}
    assert writers["Resource"] == ["arn:aws:s3:::team-data/dvc/*"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"MLFLOW_DVC_S3_REMOTE": "s3://team-data"}, "must be s3://BUCKET/PREFIX"),
        ({"MLFLOW_DVC_S3_REMOTE": "ssh://sftp/data/dvc"}, "must be s3://BUCKET/PREFIX"),
        (
            {"MLFLOW_DVC_S3_REMOTE": "s3://team-bucket/dvc"},
            "uses bucket team-bucket, which holds MLflow's artifacts",
        ),
        (
            {"MLFLOW_ARTIFACTS_DESTINATION": "sftp://mlops@sftp:2222/data/artifacts"},
            "MLFLOW_DVC_S3_REMOTE needs s3:// artifacts",
        ),
        ({"MLFLOW_PEOPLE_DIR": ""}, "MLFLOW_DVC_S3_REMOTE needs MLFLOW_PEOPLE_DIR"),
        ({"MLFLOW_AUTH_ENABLED": "false"}, "MLFLOW_DVC_S3_REMOTE needs MLFLOW_PEOPLE_DIR"),
    ],
)
def test_bad_dvc_remote_settings_name_the_variable(ep, dvc_s3_env, env, change, message) -> None:
    dvc_s3_env.update(change)
    if "sftp" in change.get("MLFLOW_ARTIFACTS_DESTINATION", ""):
        dvc_s3_env.update({k: env[k] for k in env if k.startswith("MLFLOW_SFTP_")})
    with pytest.raises(ep.ConfigError, match=re.escape(message)):
        ep.load_settings(dvc_s3_env)


def test_a_certificate_and_key_make_uvicorn_serve_https_from_their_paths(
    ep, env, tmp_path: Path
) -> None:
    cert, key = tmp_path / "tls cert.pem", tmp_path / "tls.key"
    cert.write_text("cert")
    key.write_text("key")
    env.update(MLFLOW_TLS_CERT_FILE=str(cert), MLFLOW_TLS_KEY_FILE=str(key))
    argv = ep.server_argv(ep.load_settings(env))
    opts = shlex.split(argv[argv.index("--uvicorn-opts") + 1])
    assert opts == ["--ssl-certfile", str(cert), "--ssl-keyfile", str(key)]
    del env["MLFLOW_TLS_CERT_FILE"], env["MLFLOW_TLS_KEY_FILE"]
    assert "--uvicorn-opts" not in ep.server_argv(ep.load_settings(env))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"MLFLOW_TLS_CERT_FILE": "CERT"},
            "MLFLOW_TLS_CERT_FILE is set but MLFLOW_TLS_KEY_FILE is not; set both",
        ),
        (
            {"MLFLOW_TLS_KEY_FILE": "CERT"},
            "MLFLOW_TLS_KEY_FILE is set but MLFLOW_TLS_CERT_FILE is not; set both",
        ),
        (
            {"MLFLOW_TLS_CERT_FILE": "CERT", "MLFLOW_TLS_KEY_FILE": "/nope/tls.key"},
            "MLFLOW_TLS_KEY_FILE=/nope/tls.key is not readable",
        ),
    ],
)
def test_bad_tls_files_of_the_server_name_the_variable(
    ep, env, tmp_path: Path, change: dict[str, str], message: str
) -> None:
    cert = tmp_path / "tls.crt"
    cert.write_text("cert")
    env.update({name: value.replace("CERT", str(cert)) for name, value in change.items()})
    with pytest.raises(ep.ConfigError, match=re.escape(message)):
        ep.load_settings(env)


def test_a_migration_needs_the_databases_settings_only(ep) -> None:
    """`migrate` and `wait-schema` read no artifact, auth or TLS secret: a migration Job or
    container gets the database password and nothing else."""
    env = {
        "MLFLOW_DB_HOST": "db",
        "MLFLOW_DB_PASSWORD": "p@ss",
        "MLFLOW_ARTIFACTS_DESTINATION": "s3://",  # not even looked at
        "MLFLOW_TLS_CERT_FILE": "/nope/tls.crt",
    }
    settings = ep.load_settings(env, server=False)
    assert settings.auth_db_uri.endswith("@db:5432/mlflow_auth")
    assert settings.auth_admin_password == ""
    with pytest.raises(ep.ConfigError, match="MLFLOW_AUTH_ADMIN_PASSWORD is required"):
        ep.load_settings(env)
    env["MLFLOW_AUTH_DB_NAME"] = "mlflow"
    with pytest.raises(ep.ConfigError, match="the auth database must differ"):
        ep.load_settings(env, server=False)
