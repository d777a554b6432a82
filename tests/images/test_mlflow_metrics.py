"""The server's bulk metric writes (plugins/mlops_kit_app/metrics.py) against a real PostgreSQL of
the image: the same batches sent to MLflow's own store and to the bulk one must leave the same
rows, raise the same errors, and keep the right latest values under concurrent writers."""

from __future__ import annotations

import math
import random
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg2.extensions
import pytest
import sqlalchemy
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlops_kit_app.metrics import (
    COLUMNS,
    BulkMetricWrites,
    with_bulk_metric_writes,
    write_metrics_in_bulk,
)

from tests.images.conftest import Postgres

pytestmark = pytest.mark.docker

BulkStore = with_bulk_metric_writes(SqlAlchemyStore)
KEYS = ("loss", "accuracy", "lr", "grad/norm", "val loss")


@pytest.fixture(scope="module")
def store_uri(postgres: Postgres) -> str:
    host, port = postgres.container.host_address(5432)
    password = urllib.parse.quote(postgres.secrets["app"], safe="")
    return f"postgresql+psycopg2://mlflow:{password}@{host}:{port}/mlflow"


@pytest.fixture(scope="module")
def stores(store_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    artifacts = tmp_path_factory.mktemp("artifacts").as_uri()
    stock = SqlAlchemyStore(store_uri, artifacts)
    bulk = BulkStore(store_uri, artifacts)
    yield stock, bulk
    for store in (stock, bulk):
        store.engine.dispose()


def new_run(store: Any) -> str:
    experiments = store.search_experiments()
    experiment_id = next(e.experiment_id for e in experiments if e.name == "Default")
    return store.create_run(experiment_id, "someone", 0, [], "run").info.run_id


def stored(store: Any, run_id: str) -> tuple[set[tuple[Any, ...]], dict[str, tuple[Any, ...]]]:
    """All `metrics` rows of a run, and its `latest_metrics`, read back with plain SQL."""
    with store.engine.connect() as connection:
        history = connection.execute(
            sqlalchemy.text(
                "SELECT key, value, timestamp, step, is_nan FROM metrics WHERE run_uuid = :run"
            ),
            {"run": run_id},
        )
        latest = connection.execute(
            sqlalchemy.text(
                "SELECT key, value, timestamp, step, is_nan FROM latest_metrics"
                " WHERE run_uuid = :run"
            ),
            {"run": run_id},
        )
        return {tuple(row) for row in history}, {row[0]: tuple(row) for row in latest}


def run_metrics(store: Any, run_id: str) -> dict[str, str]:
    """The run's latest values as the API gives them, as text (NaN equals NaN there)."""
    return {key: repr(value) for key, value in store.get_run(run_id).data.metrics.items()}


def tricky_batches(seed: int) -> list[list[Metric]]:
    """Batches with what the latest-value rules turn on: a key repeated within a batch, steps out
    of order, equal steps with other timestamps or values, NaN and infinities, and metrics sent
    again (exact repeats, which must not be stored twice)."""
    rng = random.Random(seed)  # noqa: S311 - repeatable test data, not secrets
    values = [0.0, 1.5, -2.0, math.nan, math.inf, -math.inf, 3.25]
    sent: list[Metric] = []
    batches = []
    for _ in range(12):
        batch = []
        for _ in range(rng.randint(1, 60)):
            if sent and rng.random() < 0.15:
                batch.append(rng.choice(sent))
                continue
            metric = Metric(
                key=rng.choice(KEYS),
                value=rng.choice(values),
                timestamp=rng.randint(1000, 1003),
                step=rng.randint(0, 3),
            )
            batch.append(metric)
        sent.extend(batch)
        batches.append(batch)
    return batches


@pytest.mark.parametrize("seed", range(6))
def test_bulk_writes_leave_what_mlflow_leaves(stores: tuple[Any, Any], seed: int) -> None:
    stock, bulk = stores
    stock_run, bulk_run = new_run(stock), new_run(bulk)
    for batch in tricky_batches(seed):
        stock.log_batch(stock_run, batch, [], [])
        bulk.log_batch(bulk_run, batch, [], [])
        assert stored(bulk, bulk_run) == stored(stock, stock_run)
    assert run_metrics(bulk, bulk_run) == run_metrics(stock, stock_run)


def test_bulk_writes_send_two_statements_and_no_update(stores: tuple[Any, Any]) -> None:
    _, bulk = stores
    run_id = new_run(bulk)
    statements: list[str] = []

    class RecordingCursor(psycopg2.extensions.cursor):
        """What reaches PostgreSQL; executemany would send its statement once per row."""

        def execute(self, query: Any, params: Any = None) -> Any:
            statements.append(query.decode() if isinstance(query, bytes) else str(query))
            return super().execute(query, params)

        def executemany(self, query: Any, params: Any) -> Any:
            statements.append(f"executemany {query}")
            return super().executemany(query, params)

    def record(dbapi_connection: Any, *_: Any) -> None:
        dbapi_connection.cursor_factory = RecordingCursor

    batch = [Metric(key=f"m{i}", value=float(i), timestamp=1, step=0) for i in range(100)]
    bulk.log_batch(run_id, batch, [], [])
    sqlalchemy.event.listen(bulk.engine, "checkout", record)
    try:
        bulk.log_batch(run_id, [Metric(m.key, m.value + 1, 2, 1) for m in batch], [], [])
    finally:
        sqlalchemy.event.remove(bulk.engine, "checkout", record)
        bulk.engine.dispose()  # no pooled connection keeps the recording cursor
    writes = [s.lstrip() for s in statements if not s.lstrip().upper().startswith("SELECT")]
    assert len(writes) == 2, writes
    assert all(s.startswith("INSERT") and "ON CONFLICT" in s for s in writes), writes
    assert stored(bulk, run_id)[1]["m7"] == ("m7", 8.0, 2, 1, False)


@pytest.mark.parametrize(
    ("metric", "message"),
    [
        (Metric("loss", "not a number", 1, 0), "metrics[1].value"),  # type: ignore[arg-type]
        (Metric("loss", 1.0, 1, None), "metrics[1].step"),  # type: ignore[arg-type]
        (Metric("../loss", 1.0, 1, 0), "Invalid value"),
        # A hostile key: refused as text, never run as SQL (the table is still there after).
        (Metric("x', 0, 0, 0, false, 'y'); DROP TABLE metrics; --", 1.0, 1, 0), "Invalid value"),
    ],
)
def test_bad_metrics_raise_what_mlflow_raises(
    stores: tuple[Any, Any], metric: Metric, message: str
) -> None:
    errors = []
    for store in stores:
        run_id = new_run(store)
        with pytest.raises(MlflowException) as raised:
            store.log_batch(run_id, [Metric("fine", 1.0, 1, 0), metric], [], [])
        errors.append((raised.value.error_code, str(raised.value)))
        assert stored(store, run_id) == (set(), {})
    assert errors[0] == errors[1]
    assert message in errors[1][1]


def test_a_deleted_run_takes_no_metric(stores: tuple[Any, Any]) -> None:
    errors = []
    for store in stores:
        run_id = new_run(store)
        store.delete_run(run_id)
        with pytest.raises(MlflowException) as raised:
            store.log_batch(run_id, [Metric("loss", 1.0, 1, 0)], [], [])
        errors.append((raised.value.error_code, str(raised.value).replace(run_id, "RUN")))
        assert stored(store, run_id) == (set(), {})
    assert errors[0] == errors[1]
    assert errors[1][0] == "INVALID_PARAMETER_VALUE"


def test_concurrent_writers_keep_the_greatest_latest_value(stores: tuple[Any, Any]) -> None:
    _, bulk = stores
    run_id = new_run(bulk)
    rng = random.Random(7)  # noqa: S311 - repeatable test data, not secrets
    batches = [
        [
            Metric(key, rng.uniform(-1, 1), rng.randint(1, 50), rng.randint(0, 50))
            for key in rng.sample(KEYS, k=len(KEYS))
        ]
        for _ in range(64)
    ]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda batch: bulk.log_batch(run_id, batch, [], []), batches))
    history, latest = stored(bulk, run_id)
    sent = [m for batch in batches for m in batch]
    assert history == {(m.key, m.value, m.timestamp, m.step, False) for m in sent}
    for key in KEYS:
        greatest = max(
            (m for m in sent if m.key == key), key=lambda m: (m.step, m.timestamp, m.value)
        )
        assert latest[key] == (key, greatest.value, greatest.timestamp, greatest.step, False)


def test_the_server_builds_its_postgresql_store_with_bulk_writes(
    store_uri: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from mlflow.server import handlers

    write_metrics_in_bulk()
    write_metrics_in_bulk()  # twice: still one wrapper
    artifacts = tmp_path_factory.mktemp("server-artifacts").as_uri()
    store = handlers._tracking_store_registry.get_store(store_uri, artifacts)
    try:
        assert isinstance(store, BulkMetricWrites)
        assert isinstance(store, SqlAlchemyStore)
        assert type(store).__mro__.count(BulkMetricWrites) == 1
    finally:
        store.engine.dispose()


def test_the_bulk_writes_send_every_column_of_mlflows_metric_tables() -> None:
    # A column MLflow adds must be seen here: the bulk INSERTs name their columns.
    for table in (SqlMetric.__table__, SqlLatestMetric.__table__):
        assert sorted(COLUMNS) == sorted(column.name for column in table.columns), table.name
