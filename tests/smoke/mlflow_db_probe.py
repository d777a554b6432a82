"""Runs INSIDE the MLflow container: `python - QUERY_JSON`, this file on stdin.

It reads what a smoke run stored, straight from PostgreSQL, with the container's own database
settings (images/README.md: MLFLOW_DB_HOST, MLFLOW_DB_PORT, MLFLOW_DB_USER, MLFLOW_DB_NAME,
MLFLOW_DB_PASSWORD_FILE, MLFLOW_DB_SSLMODE, MLFLOW_AUTH_DB_NAME), and prints one JSON line.
So the check needs no route from the test host to the database, and the password never leaves
the container nor shows on a command line. Only the standard library and psycopg2 (in the image).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import psycopg2


def connect(dbname: str):
    password_file = os.environ.get("MLFLOW_DB_PASSWORD_FILE", "")
    if not password_file:
        sys.exit("error: MLFLOW_DB_PASSWORD_FILE is not set in the MLflow container")
    sslmode = os.environ.get("MLFLOW_DB_SSLMODE", "")
    options = {"sslmode": sslmode} if sslmode else {}
    return psycopg2.connect(
        host=os.environ["MLFLOW_DB_HOST"],
        port=int(os.environ.get("MLFLOW_DB_PORT") or 5432),
        user=os.environ.get("MLFLOW_DB_USER") or "mlflow",
        password=Path(password_file).read_text().rstrip("\n"),
        dbname=dbname,
        connect_timeout=10,
        **options,
    )


def fetch(cursor, sql: str, args: tuple) -> list[list]:
    cursor.execute(sql, args)
    return [list(row) for row in cursor.fetchall()]


def main() -> None:
    query = json.loads(sys.argv[1])
    found: dict[str, list[list]] = {}
    with connect(os.environ.get("MLFLOW_DB_NAME") or "mlflow") as conn, conn.cursor() as cur:
        found["experiment"] = fetch(
            cur,
            "SELECT name FROM experiments WHERE experiment_id = %s",
            (int(query["experiment_id"]),),
        )
        found["params"] = fetch(
            cur,
            "SELECT key, value FROM params WHERE run_uuid = %s ORDER BY key",
            (query["run_id"],),
        )
        found["metrics"] = fetch(
            cur,
            "SELECT step, value FROM metrics WHERE run_uuid = %s AND key = %s ORDER BY step",
            (query["run_id"], query["metric"]),
        )
        found["alias"] = fetch(
            cur,
            "SELECT version FROM registered_model_aliases WHERE name = %s AND alias = %s",
            (query["model_name"], query["alias"]),
        )
    auth_db = os.environ.get("MLFLOW_AUTH_DB_NAME") or "mlflow_auth"
    with connect(auth_db) as conn, conn.cursor() as cur:
        found["admin"] = fetch(
            cur, "SELECT is_admin FROM users WHERE username = %s", (query["admin_username"],)
        )
    print(json.dumps(found))


if __name__ == "__main__":
    main()
