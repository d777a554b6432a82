"""TLS to PostgreSQL and the read replica in the chart (and the same names on the Docker target):
the CA Secret is mounted read-only where MLFLOW_DB_SSLROOTCERT points, settings that cannot work
stop the render, and the schema refuses malformed values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from chartlib import Rendered, RenderError, env_map, helm_template, migrate_container

from tests.support.docker_role import render_docker_role

EXTERNAL = {"postgresql": {"enabled": False}}
EXTERNAL_DB = {"host": "db.example.com", "existingSecret": "external-db"}


def mlflow_pod(rendered: Rendered) -> dict[str, Any]:
    return rendered.get("Deployment", "-mlflow")["spec"]["template"]["spec"]


def mlflow_containers(rendered: Rendered) -> list[dict[str, Any]]:
    """The server, its schema gate and the migration Job: all connect to the database."""
    spec = mlflow_pod(rendered)
    init = [c for c in spec["initContainers"] if c["name"] == "wait-schema"]
    return [spec["containers"][0], *init, migrate_container(rendered)]


def test_external_database_mounts_the_ca_where_the_setting_points(
    matrix_renders: dict[str, Rendered],
) -> None:
    rendered = matrix_renders["external-db"]
    volumes = {v["name"]: v for v in mlflow_pod(rendered)["volumes"]}
    assert volumes["db-ca"]["secret"] == {
        "secretName": "external-db-ca",
        "defaultMode": 0o444,
        "items": [{"key": "root.pem", "path": "ca.crt"}],
    }
    for container in mlflow_containers(rendered):
        env = env_map(container)
        assert env["MLFLOW_DB_SSLMODE"] == "verify-full"
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        assert mounts["db-ca"] == {
            "name": "db-ca", "mountPath": "/etc/mlflow/db-tls", "readOnly": True,
        }  # fmt: skip
        assert env["MLFLOW_DB_SSLROOTCERT"] == f"{mounts['db-ca']['mountPath']}/ca.crt"


def test_external_database_read_replica(matrix_renders: dict[str, Rendered]) -> None:
    for container in mlflow_containers(matrix_renders["external-db"]):
        env = env_map(container)
        assert (env["MLFLOW_DB_READ_REPLICA_HOST"], env["MLFLOW_DB_READ_REPLICA_PORT"]) == (
            "db-ro.example.com",
            "6433",
        )


def test_defaults_set_no_tls_or_replica(matrix_renders: dict[str, Rendered]) -> None:
    rendered = matrix_renders["defaults"]
    env = env_map(mlflow_pod(rendered)["containers"][0])
    for name in (
        "MLFLOW_DB_SSLMODE", "MLFLOW_DB_SSLROOTCERT", "MLFLOW_DB_READ_REPLICA_HOST",
        "MLFLOW_DB_READ_REPLICA_PORT",
    ):  # fmt: skip
        assert name not in env
    assert "db-ca" not in {v["name"] for v in mlflow_pod(rendered)["volumes"]}
    pg = rendered.get("StatefulSet", "-postgresql")["spec"]["template"]["spec"]
    assert not {"POSTGRESQL_TLS_CERT_FILE", "POSTGRESQL_TLS_KEY_FILE"} & set(
        env_map(pg["containers"][0])
    )


def test_bundled_postgresql_serves_tls_from_its_secret(matrix_renders: dict[str, Rendered]) -> None:
    rendered = matrix_renders["existing-secrets"]
    spec = rendered.get("StatefulSet", "-postgresql")["spec"]["template"]["spec"]
    container = spec["containers"][0]
    env = env_map(container)
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["tls"] == {"name": "tls", "mountPath": "/etc/postgresql/tls", "readOnly": True}
    assert (env["POSTGRESQL_TLS_CERT_FILE"], env["POSTGRESQL_TLS_KEY_FILE"]) == (
        "/etc/postgresql/tls/tls.crt",
        "/etc/postgresql/tls/tls.key",
    )
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["tls"]["secret"] == {
        "secretName": "team-postgresql-tls",
        "defaultMode": 0o440,
        "items": [{"key": "tls.crt", "path": "tls.crt"}, {"key": "tls.key", "path": "tls.key"}],
    }
    # The server then refuses plaintext; MLflow asks for TLS from the start.
    assert env_map(mlflow_pod(rendered)["containers"][0])["MLFLOW_DB_SSLMODE"] == "require"


@pytest.mark.parametrize(
    ("database", "message"),
    [
        (
            {"sslmode": "verify-full"},
            "externalDatabase.sslmode=verify-full checks the server's certificate against a CA, "
            "but externalDatabase.tls.existingSecret is empty",
        ),
        (
            {"sslmode": "verify-ca", "tls": {"existingSecret": ""}},
            "externalDatabase.sslmode=verify-ca checks the server's certificate",
        ),
        (
            {"tls": {"existingSecret": "db-ca"}},
            'externalDatabase.tls.existingSecret is set but externalDatabase.sslmode="" lets the '
            "connection go without TLS: set externalDatabase.sslmode: verify-full",
        ),
        (
            {"sslmode": "prefer", "tls": {"existingSecret": "db-ca"}},
            'externalDatabase.sslmode="prefer" lets the connection go without TLS',
        ),
    ],
)
def test_tls_settings_that_cannot_work_stop_the_render(
    helm: Path, database: dict[str, Any], message: str
) -> None:
    with pytest.raises(RenderError) as failure:
        helm_template(helm, {**EXTERNAL, "externalDatabase": {**EXTERNAL_DB, **database}})
    assert message in str(failure.value)


BAD_VALUES = [
    ({"externalDatabase": {"sslmode": "verify_full"}}, "/externalDatabase/sslmode"),
    ({"externalDatabase": {"readReplica": {"port": 0}}}, "/externalDatabase/readReplica/port"),
    ({"externalDatabase": {"readReplica": {"port": "5432"}}}, "/externalDatabase/readReplica/port"),
    (
        {"externalDatabase": {"readReplica": {"host": "db ro"}}},
        "/externalDatabase/readReplica/host",
    ),
    (
        {"externalDatabase": {"readReplica": {"hosts": ["a"]}}},
        "additional properties 'hosts' not allowed",
    ),
    ({"externalDatabase": {"tls": {"existingSecret": "Bad_Name"}}}, "/externalDatabase/tls"),
    ({"externalDatabase": {"tls": {"caKey": "../ca.crt"}}}, "/externalDatabase/tls/caKey"),
    ({"externalDatabase": {"tls": {"ca": "PEM"}}}, "additional properties 'ca' not allowed"),
    ({"postgresql": {"tls": {"existingSecret": "Bad_Name"}}}, "/postgresql/tls/existingSecret"),
    ({"postgresql": {"tls": {"cert": "x"}}}, "additional properties 'cert' not allowed"),
]


@pytest.mark.parametrize(("values", "message"), BAD_VALUES, ids=[str(v) for v, _ in BAD_VALUES])
def test_schema_rejects_bad_tls_values(helm: Path, values: dict, message: str) -> None:
    from test_chart_values import names_the_problem

    with pytest.raises(RenderError) as failure:
        helm_template(helm, values)
    assert "values don't meet the specifications of the schema" in str(failure.value)
    assert names_the_problem(str(failure.value), message), str(failure.value)


# ---------- the Docker target: the same image settings from its own variables ----------

DOCKER = """{'env': mlops_docker_mlflow_env, 'mounts': mlops_docker_mlflow_mounts,
  'pg_env': mlops_docker_postgresql_tls_env, 'pg_mounts': mlops_docker_postgresql_tls_mounts}"""


def test_docker_role_mounts_the_ca_and_sets_the_same_variables(tmp_path: Path) -> None:
    found = render_docker_role(
        tmp_path, DOCKER,
        mlops_docker_db_sslmode="verify-full", mlops_docker_db_sslrootcert="/etc/pki/db-ca.pem",
        mlops_docker_db_read_replica_host="db-ro.example.com",
        mlops_docker_db_read_replica_port=6433,
        mlops_docker_postgresql_tls_cert_file="/etc/pki/pg.crt",
        mlops_docker_postgresql_tls_key_file="/etc/pki/pg.key",
    )  # fmt: skip
    env = found["env"]
    assert env["MLFLOW_DB_SSLMODE"] == "verify-full"
    assert (env["MLFLOW_DB_READ_REPLICA_HOST"], env["MLFLOW_DB_READ_REPLICA_PORT"]) == (
        "db-ro.example.com",
        "6433",
    )
    ca = {"type": "bind", "source": "/etc/pki/db-ca.pem", "read_only": True}
    assert [m for m in found["mounts"] if m["source"] == ca["source"]] == [
        {**ca, "target": env["MLFLOW_DB_SSLROOTCERT"]}
    ]
    assert sorted((m["source"], m["target"], m["read_only"]) for m in found["pg_mounts"]) == [
        ("/etc/pki/pg.crt", found["pg_env"]["cert"], True),
        ("/etc/pki/pg.key", found["pg_env"]["key"], True),
    ]


def test_docker_role_defaults_set_no_tls(tmp_path: Path) -> None:
    found = render_docker_role(tmp_path, DOCKER)
    env = found["env"]
    assert (env["MLFLOW_DB_SSLMODE"], env["MLFLOW_DB_SSLROOTCERT"]) == ("", "")
    assert env["MLFLOW_DB_READ_REPLICA_HOST"] == ""
    assert found["pg_env"] == {"cert": "", "key": ""}
    assert found["pg_mounts"] == []
    assert not [m for m in found["mounts"] if "db-tls" in m["target"]]
