"""The Docker role's one-off migration container gets what the chart's migration Job gets: the
databases' settings and password, and no other secret of the server."""

from __future__ import annotations

from pathlib import Path

from tests.support.docker_role import render_docker_role

EXPRESSION = (
    "{'env': mlops_docker_migrate_env, 'mounts': mlops_docker_migrate_mounts, "
    "'server': mlops_docker_mlflow_env}"
)
# Everything a deploy can turn on, so that every secret of the server is there to leave out.
SETTINGS = {
    "mlops_docker_db_sslmode": "verify-full",
    "mlops_docker_db_sslrootcert": "/etc/mlops-kit/ca.crt",
    "mlops_docker_mlflow_tls_cert_file": "/etc/mlops-kit/mlflow.crt",
    "mlops_docker_mlflow_tls_key_file": "/etc/mlops-kit/mlflow.key",
    "mlops_docker_artifacts_backend": "s3",
    "mlops_docker_artifacts_s3_bucket": "team-artifacts",
    "mlops_docker_artifacts_s3_credentials_file": "/etc/mlops-kit/s3/credentials",
}


def test_the_migration_gets_the_database_settings_and_password_alone(tmp_path: Path) -> None:
    value = render_docker_role(tmp_path, EXPRESSION, **SETTINGS)
    env, mounts, server = value["env"], value["mounts"], value["server"]
    assert env == {k: v for k, v in server.items() if k.startswith("MLFLOW_DB_") or k in {
        "MLFLOW_AUTH_ENABLED", "MLFLOW_AUTH_DB_NAME"}}  # fmt: skip
    assert env["MLFLOW_DB_SSLROOTCERT"], "the CA the database's certificate is checked with"
    targets = {mount["target"]: mount for mount in mounts}
    assert set(targets) == {env["MLFLOW_DB_PASSWORD_FILE"], env["MLFLOW_DB_SSLROOTCERT"]}
    assert all(mount["read_only"] for mount in mounts)
    assert targets[env["MLFLOW_DB_PASSWORD_FILE"]]["source"].endswith("/mlflow/db_password")
    # What the server has and the migration must not: its other secrets' files.
    for name in ("MLFLOW_AUTH_ADMIN_PASSWORD_FILE", "MLFLOW_FLASK_SERVER_SECRET_KEY_FILE",
                 "MLFLOW_S3_CREDENTIALS_FILE", "MLFLOW_TLS_KEY_FILE"):  # fmt: skip
        assert server[name], name
        assert name not in env, name
