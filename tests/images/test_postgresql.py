"""The PostgreSQL image, hardened under a random UID, against a real psycopg2 client."""

from __future__ import annotations

import subprocess

import psycopg2
import pytest

from tests.images.conftest import Postgres
from tests.support.docker import (
    Sandbox,
    assert_config_error,
    docker,
    new_secret,
    secret_dir,
)

pytestmark = pytest.mark.docker


def connect(
    pg: Postgres, dbname: str = "mlflow", user: str = "mlflow", password: str | None = None
):
    return psycopg2.connect(
        host="127.0.0.1", port=pg.port, dbname=dbname, user=user,
        password=pg.secrets["app"] if password is None else password, connect_timeout=5,
    )  # fmt: skip


def test_runs_as_the_assigned_non_root_uid(postgres: Postgres) -> None:
    assert postgres.container.health() == "healthy"
    assert postgres.container.exec("id", "-u").strip() == str(postgres.container.uid)
    assert postgres.container.exec("id", "-g").strip() == "0"


def test_app_user_owns_the_tracking_and_auth_databases(postgres: Postgres) -> None:
    for database in ("mlflow", "mlflow_auth"):
        with connect(postgres, database) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT current_user, pg_get_userbyid(datdba) FROM pg_database "
                "WHERE datname = current_database()"
            )
            assert cur.fetchone() == ("mlflow", "mlflow")


# The password is read inside the container from its secret file: never in a process argument.
FROM_SECRET = 'PGPASSWORD="$(cat "$POSTGRESQL_PASSWORD_FILE")" exec "$@"'
WRONG_PASSWORD = 'PGPASSWORD=not-the-password exec "$@"'


def socket_psql(pg: Postgres, password_shell: str, sql: str) -> subprocess.CompletedProcess[str]:
    """psql as the superuser through the socket inside the container (as backups do)."""
    return docker(
        "exec", pg.container.name, "sh", "-c", password_shell, "sh",
        "psql", "-qAtX", "-U", "postgres", "-d", "postgres", "-c", sql, check=False,
    )  # fmt: skip


def test_superuser_password_comes_from_its_secret(postgres: Postgres) -> None:
    sql = "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
    ok = socket_psql(postgres, FROM_SECRET, sql)
    assert ok.stdout.strip() == "t", ok.stderr
    wrong = socket_psql(postgres, WRONG_PASSWORD, "SELECT 1")
    assert "password authentication failed" in wrong.stderr


def test_superuser_cannot_log_in_over_the_network(postgres: Postgres) -> None:
    """Even with the right password: the superuser exists for the socket inside the container."""
    for database in ("postgres", "mlflow"):
        with pytest.raises(psycopg2.OperationalError, match=r"pg_hba\.conf rejects connection"):
            connect(postgres, database, "postgres", postgres.secrets["superuser"])


@pytest.mark.parametrize("database", ["postgres", "template1"])
def test_app_role_reaches_only_its_own_databases(postgres: Postgres, database: str) -> None:
    with pytest.raises(psycopg2.OperationalError, match=r"no pg_hba\.conf entry"):
        connect(postgres, database)


def test_wrong_password_is_rejected(postgres: Postgres) -> None:
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        connect(postgres, "mlflow", "mlflow", "not-the-password")


def test_data_survives_a_restart(postgres: Postgres) -> None:
    with connect(postgres) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS survivor (v text)")
        cur.execute("INSERT INTO survivor VALUES ('still here')")
    conn.close()
    postgres.container.restart()
    postgres.container.wait_healthy()
    with connect(postgres) as conn, conn.cursor() as cur:
        cur.execute("SELECT v FROM survivor")
        assert ("still here",) in cur.fetchall()


def test_stops_cleanly_on_sigterm(postgres: Postgres) -> None:
    postgres.container.restart()  # docker restart sends SIGTERM first
    assert "database system is shut down" in postgres.container.logs()
    postgres.container.wait_healthy()


def test_rotated_app_password_applies_on_restart(postgres: Postgres) -> None:
    rotated = new_secret()
    (postgres.secrets_dir / "app").write_text(rotated + "\n")
    postgres.container.restart()
    postgres.container.wait_healthy()
    try:
        with connect(postgres, password=rotated) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)
        with pytest.raises(psycopg2.OperationalError):
            connect(postgres, password=postgres.secrets["app"])
    finally:
        postgres.secrets["app"] = rotated


def test_rotated_superuser_password_applies_on_restart(postgres: Postgres) -> None:
    """The mounted secret is the truth, also for the superuser: rotating it (or a lost
    controller that generated a new one) must not lock the entrypoint out of its own cluster."""
    rotated = new_secret()
    (postgres.secrets_dir / "superuser").write_text(rotated + "\n")
    postgres.container.restart()
    postgres.container.wait_healthy()
    try:
        ok = socket_psql(postgres, FROM_SECRET, "SELECT 1")
        assert ok.stdout.strip() == "1", ok.stderr
        # The old password travels on stdin, not in an argument.
        stale = subprocess.run(
            ["docker", "exec", "-i", postgres.container.name, "sh", "-c",
             'read -r PGPASSWORD && export PGPASSWORD && exec "$@"', "sh",
             "psql", "-qAtX", "-U", "postgres", "-d", "postgres", "-c", "SELECT 1"],
            input=postgres.secrets["superuser"] + "\n", capture_output=True, text=True,
            timeout=60, check=False,
        )  # fmt: skip
        assert "password authentication failed" in stale.stderr
    finally:
        postgres.secrets["superuser"] = rotated


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"POSTGRESQL_APP_PASSWORD": "x"}, "POSTGRESQL_PASSWORD is required"),
        ({"POSTGRESQL_PASSWORD": "x"}, "POSTGRESQL_APP_PASSWORD is required"),
        (
            {
                "POSTGRESQL_PASSWORD": "x",
                "POSTGRESQL_PASSWORD_FILE": "/x",
                "POSTGRESQL_APP_PASSWORD": "y",
            },
            "both POSTGRESQL_PASSWORD and POSTGRESQL_PASSWORD_FILE",
        ),
        (
            {"POSTGRESQL_PASSWORD_FILE": "/nope", "POSTGRESQL_APP_PASSWORD": "y"},
            "POSTGRESQL_PASSWORD_FILE=/nope is not a readable file",
        ),
        (
            {
                "POSTGRESQL_PASSWORD": "x",
                "POSTGRESQL_APP_PASSWORD": "y",
                "POSTGRESQL_APP_DB": "Bad-Name",
            },
            "POSTGRESQL_APP_DB='Bad-Name' must match",
        ),
        (
            {
                "POSTGRESQL_PASSWORD": "x",
                "POSTGRESQL_APP_PASSWORD": "y",
                "POSTGRESQL_APP_USER": "postgres",
            },
            "POSTGRESQL_APP_USER=postgres: the application role must not be the superuser",
        ),
    ],
)
def test_bad_configuration_fails_at_once_with_one_line(
    sandbox: Sandbox, images, env: dict[str, str], message: str
) -> None:
    result = sandbox.run_to_exit(images.ref("postgresql"), env=env)
    assert_config_error(result, message)


def test_a_cluster_of_another_major_version_stops_at_once(
    sandbox: Sandbox, images, tmp_path
) -> None:
    volume = sandbox.volume("other-major")
    mount = f"{volume}:/var/lib/postgresql/data"
    # What PostgreSQL 14 left behind, as far as any PostgreSQL can tell: its version file.
    sandbox.run_to_exit(
        images.ref("postgresql"), env={}, entrypoint="sh", mounts=[mount],
        command=["-c", "mkdir -m 0750 $PGDATA && echo 14 > $PGDATA/PG_VERSION && touch "
                 "$PGDATA/base"],
    )  # fmt: skip
    secrets = secret_dir(tmp_path / "secrets", {"superuser": new_secret(), "app": new_secret()})
    result = sandbox.run_to_exit(
        images.ref("postgresql"),
        env={
            "POSTGRESQL_PASSWORD_FILE": "/run/secrets/db/superuser",
            "POSTGRESQL_APP_PASSWORD_FILE": "/run/secrets/db/app",
        },
        mounts=[mount, f"{secrets}:/run/secrets/db:ro"],
    )
    assert_config_error(result, "holds a PostgreSQL 14 cluster and this image runs PostgreSQL")
    for words in ("nothing was changed", "make backup", "make restore", "dump and restore"):
        assert words in result.stderr
    listing = sandbox.run_to_exit(
        images.ref("postgresql"), env={}, entrypoint="sh", mounts=[mount],
        command=["-c", "cat $PGDATA/PG_VERSION && ls -A $PGDATA"],
    )  # fmt: skip
    assert listing.stdout.split() == ["14", "PG_VERSION", "base"], "the guard changed the data"
