"""Metrics written in two statements on PostgreSQL.

MLflow (3.17) writes a batch of metrics through its ORM: an object per metric, a SELECT of the
run's latest values of those keys, a SELECT ... FOR UPDATE of them, then an UPDATE per key whose
latest value moved. For `log_batch` of 100 metrics that is about 70 % of the server's CPU per
request (py-spy), and 100 UPDATE statements for PostgreSQL.

Here the same rows go in with one INSERT ... ON CONFLICT DO NOTHING (MLflow, after a duplicate
key, inserts exactly the rows not there yet) and one upsert of the latest values that keeps the
greater (step, timestamp, value), MLflow's own order, with the first of equal ones winning.
Validation, the run checks, the deadlock retry and the session (one transaction, committed) stay
MLflow's: nothing about durability changes. Other databases keep MLflow's code.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from typing import Any

POSTGRESQL = "postgresql"
LATEST_VALUE_COLUMNS = ("value", "timestamp", "step", "is_nan")
# MLflow takes at most 1,000 metrics per batch: one statement each.
ROWS_PER_STATEMENT = 1000
# The columns of both `metrics` and `latest_metrics`, in the order the rows are sent.
COLUMNS = ("key", "value", "timestamp", "step", "is_nan", "run_uuid")
# Set on what this module made, so that installing it twice changes nothing.
MARK = "writes_metrics_in_bulk"
# What a worker logs when it has built its tracking store with the bulk writes.
BUILT_LOG = "mlops_kit_app.metrics: tracking store with bulk metric writes"


def metric_rows(store: Any, run_id: str, metrics: Sequence[Any]) -> list[dict[str, Any]]:
    """The `metrics` rows of a batch, checked and without repeats, as MLflow's
    `_log_metrics_once` makes them (its checks raise the same errors)."""
    from mlflow.store.tracking import sqlalchemy_store

    rows: list[dict[str, Any]] = []
    seen: set[Any] = set()
    is_single_metric = len(metrics) == 1
    for index, metric in enumerate(metrics):
        sqlalchemy_store._validate_metric(
            metric.key,
            metric.value,
            metric.timestamp,
            metric.step,
            path="" if is_single_metric else f"metrics[{index}]",
        )
        if metric in seen:
            continue
        seen.add(metric)
        is_nan, value = store.sanitize_metric_value(metric.value)
        rows.append(
            {
                "run_uuid": run_id,
                "key": metric.key,
                "value": value,
                "timestamp": metric.timestamp,
                "step": metric.step,
                "is_nan": is_nan,
            }
        )
    return rows


def _order(row: dict[str, Any]) -> tuple[Any, Any, Any]:
    return (row["step"], row["timestamp"], row["value"])


def latest_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per key, the row MLflow keeps as the latest of a batch: the greatest (step, timestamp,
    value), the first of equal ones. Sorted by key, so that concurrent batches lock the
    `latest_metrics` rows of a run in the same order (as MLflow does, against deadlocks)."""
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:
        kept = latest.get(row["key"])
        if kept is None or _order(row) > _order(kept):
            latest[row["key"]] = row
    return [latest[key] for key in sorted(latest)]


def _insert_sql(table: str, conflict: str) -> str:
    columns = ", ".join(COLUMNS)
    # Names only (MLflow's tables, this module's columns); every value is bound by psycopg2.
    return f"INSERT INTO {table} ({columns}) VALUES %s ON CONFLICT {conflict}"  # noqa: S608


def _values(rows: Iterable[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [tuple(row[column] for column in COLUMNS) for row in rows]


def write_metrics(session: Any, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` into `metrics` (those already there are left alone) and raise each key's
    `latest_metrics` row where the batch's latest is greater, on the session's connection (its
    transaction). psycopg2's `execute_values` sends each as one multi-row INSERT: SQLAlchemy
    (2.1) would send an INSERT ... ON CONFLICT once per row, or compile a multi-row one anew for
    each batch, at about a sixth of the request's CPU."""
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric
    from psycopg2.extras import execute_values

    if not rows:
        return
    latest = SqlLatestMetric.__tablename__
    primary_key = ", ".join(column.name for column in SqlLatestMetric.__table__.primary_key)
    raise_latest = (
        f"({primary_key}) DO UPDATE SET "
        + ", ".join(f"{column} = EXCLUDED.{column}" for column in LATEST_VALUE_COLUMNS)
        + f" WHERE (EXCLUDED.step, EXCLUDED.timestamp, EXCLUDED.value)"
        f" > ({latest}.step, {latest}.timestamp, {latest}.value)"
    )
    with session.connection().connection.cursor() as cursor:
        execute_values(
            cursor,
            _insert_sql(SqlMetric.__tablename__, "DO NOTHING"),
            _values(rows),
            page_size=ROWS_PER_STATEMENT,
        )
        execute_values(
            cursor,
            _insert_sql(latest, raise_latest),
            _values(latest_rows(rows)),
            page_size=ROWS_PER_STATEMENT,
        )


class BulkMetricWrites:
    """Mixed into MLflow's SQLAlchemy tracking store (either class: with or without
    workspaces); replaces only the step that writes a batch of metrics."""

    def _log_metrics_once(self, run_id: str, metrics: Sequence[Any]) -> None:
        if getattr(self, "db_type", None) != POSTGRESQL:
            return super()._log_metrics_once(run_id, metrics)  # type: ignore[misc]
        rows = metric_rows(self, run_id, metrics)
        with self.ManagedSessionMaker(read_only=False) as session:  # type: ignore[attr-defined]
            run = self._get_run(run_uuid=run_id, session=session)  # type: ignore[attr-defined]
            self._check_run_is_active(run)  # type: ignore[attr-defined]
            write_metrics(session, rows)
            session.commit()


_STORE_CLASSES: dict[type, type] = {}


def with_bulk_metric_writes(store_class: type) -> type:
    """``store_class`` with BulkMetricWrites mixed in (one class per store class)."""
    if issubclass(store_class, BulkMetricWrites):
        return store_class
    if store_class not in _STORE_CLASSES:
        _STORE_CLASSES[store_class] = type(
            f"BulkMetrics{store_class.__name__}", (BulkMetricWrites, store_class), {}
        )
    return _STORE_CLASSES[store_class]


def write_metrics_in_bulk() -> None:
    """Make the server's PostgreSQL tracking store write metrics in bulk: its registry keeps
    building the store as MLflow does (workspaces, read replica), and the store it returns gets
    the bulk writes. Called by the app factory of each worker, before MLflow builds its store
    (at the first request); the store says so in the log when it is built."""
    from mlflow.server import handlers

    registry = handlers._tracking_store_registry
    build = registry.get_store_builder(f"{POSTGRESQL}://")
    if getattr(build, MARK, False):
        return

    def build_store(store_uri: str, artifact_uri: str | None = None) -> Any:
        store = build(store_uri, artifact_uri)
        store.__class__ = with_bulk_metric_writes(type(store))
        print(f"{BUILT_LOG}: {type(store).__name__}", file=sys.stderr, flush=True)
        return store

    setattr(build_store, MARK, True)
    registry.register(POSTGRESQL, build_store)
