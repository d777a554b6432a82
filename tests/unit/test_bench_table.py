"""The Markdown table of `make bench` (bench/report.py) and the tracking rows it is made of."""

from __future__ import annotations

import pytest

from bench.docker_deploy import changed_count, parse_memory, recreated
from bench.report import (
    README_BEGIN,
    README_END,
    Goal,
    Point,
    Row,
    at_least,
    at_most,
    format_report,
    format_table,
    format_value,
    not_run,
    replace_readme_block,
    shortfalls,
)
from bench.tracking import STACK, Series, rows


def test_table_has_a_line_per_row_with_value_reference_and_ratio():
    table = format_table(
        [
            Row("tracking", "4 clients: req/s", "req/s", 30.0, "stock", 10.0),
            Row("dvc", "push", "s", 2.5, "sftp", 0.5),
        ]
    ).splitlines()
    header = "| area | measure | this stack | reference | reference value | ratio | goal |"
    assert table[0] == header
    assert table[1] == "|---|---|---|---|---|---|---|"
    assert (
        table[2] == "| tracking | 4 clients: req/s | 30.0 req/s | stock | 10.0 req/s | 3.00x | - |"
    )
    assert table[3] == "| dvc | push | 2.50 s | sftp | 0.500 s | 5.00x | - |"
    assert len(table) == 4


def test_a_row_not_run_says_why_and_has_no_ratio():
    line = format_table([not_run("deploy", "warm deploy", "s", "skipped")])
    assert line.splitlines()[2] == "| deploy | warm deploy | skipped | - | - | - | - |"


def test_not_run_beside_a_measured_reference_keeps_the_reference_figure():
    row = Row("tracking", "p99", "ms", None, "stock", 250.0, "not run (Docker target only)")
    assert row.ratio is None
    assert "| not run (Docker target only) | stock | 250 ms | - |" in format_table([row])


def test_zero_reference_gives_no_ratio_instead_of_dividing_by_zero():
    assert Row("a", "m", "s", 1.0, "ref", 0.0).ratio is None


def test_pipes_in_cells_do_not_break_the_table():
    line = format_table([Row("a", "x|y", "s", 1.0)]).splitlines()[2]
    assert "x\\|y" in line


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1234.4, "1234 MiB/s"),
        (33.33, "33.3 MiB/s"),
        (5.554, "5.55 MiB/s"),
        (0.01234, "0.012 MiB/s"),
    ],
)
def test_values_keep_about_three_significant_digits(value, text):
    assert format_value(value, "MiB/s") == text


def test_no_rows_is_an_error():
    with pytest.raises(ValueError, match="no rows"):
        format_table([])


def test_tracking_rows_compare_each_client_count_with_the_stock_server():
    stack = [Point(1, 10.0, 0.08, 0.1), Point(4, 20.0, 0.15, 0.3)]
    stock = [Point(1, 5.0, 0.2, 0.4), Point(4, 4.0, 0.3, 0.6)]
    result = rows(stock, [Series(STACK, stack), Series("cache off", None, "not run (why)")])
    measured = [r for r in result if r.value is not None]
    assert [r.measure.rsplit(": ", 1)[1] for r in measured] == ["req/s", "p50", "p99"] * 2
    assert measured[0].ratio == pytest.approx(2.0)
    assert measured[5].value == pytest.approx(300.0)  # p99 in ms
    assert measured[5].ratio == pytest.approx(0.5)
    skipped = [r for r in result if r.value is None]
    assert len(skipped) == 6
    assert all(r.missing == "not run (why)" for r in skipped)
    assert skipped[0].reference_value == pytest.approx(5.0)


def test_tracking_rows_of_every_series_measured_have_a_ratio():
    points = [Point(16, 8.0, 1.0, 2.0)]
    result = rows(points, [Series(STACK, points), Series("other", points)])
    assert len(result) == 6
    assert all(r.ratio == pytest.approx(1.0) for r in result)


def test_the_goals_judge_this_stack_at_sixteen_clients_only():
    stock = [Point(4, 10.0, 0.1, 1.0), Point(16, 10.0, 0.1, 1.0)]
    fast = [Point(4, 30.0, 0.1, 0.2), Point(16, 16.0, 0.1, 0.2)]
    result = rows(stock, [Series(STACK, fast), Series("Kubernetes", fast)])
    judged = [r for r in result if r.goal]
    assert [r.measure for r in judged] == [
        f"log_batch(100), 16 clients, {STACK}: req/s",
        f"log_batch(100), 16 clients, {STACK}: p99",
    ]
    assert [r.verdict for r in judged] == ["≥ 1.5x: met", "≤ 0.3x: met"]


@pytest.mark.parametrize(
    ("goal", "value", "reference", "verdict"),
    [
        (at_least(0.8), 79.0, 100.0, "≥ 0.8x: **short**"),
        (at_least(0.8), 80.0, 100.0, "≥ 0.8x: met"),
        (at_most(0.3), 31.0, 100.0, "≤ 0.3x: **short**"),
        (Goal(15, at_most=True, of_ratio=False), 14.9, None, "≤ 15 s: met"),
        (Goal(15, at_most=True, of_ratio=False), 15.1, None, "≤ 15 s: **short**"),
        (at_least(0.8), None, 100.0, "≥ 0.8x: not measured"),
    ],
)
def test_a_goal_is_met_or_short_by_the_ratio_or_the_value(goal, value, reference, verdict):
    row = Row("a", "m", "s", value, "ref" if reference else None, reference, goal=goal)
    assert row.verdict == verdict


def test_the_report_counts_the_goals_met_among_those_measured():
    short = Row("a", "short", "s", 0.5, "ref", 1.0, goal=at_least(0.8))
    report = format_report(
        [
            Row("a", "met", "s", 1.0, "ref", 1.0, goal=at_least(0.8)),
            short,
            Row("a", "not measured", "s", None, "ref", 1.0, "skipped", goal=at_least(0.8)),
            Row("a", "no goal", "s", 0.1, "ref", 1.0),
        ],
        ["conditions"],
    )
    assert report.startswith("conditions\n\n| area |")
    assert report.endswith("\nGoals met: 1 of 2 measured.\n")
    assert shortfalls([short, Row("a", "no goal", "s", 0.1)]) == [short]


README = f"""# Title

before
{README_BEGIN}
old table
{README_END}
after
"""


def test_readme_block_is_replaced_and_the_rest_kept():
    updated = replace_readme_block(README, "| new |\n")
    assert updated == f"# Title\n\nbefore\n{README_BEGIN}\n| new |\n{README_END}\nafter\n"
    assert replace_readme_block(updated, "| new |") == updated


@pytest.mark.parametrize("text", ["no markers\n", README + README])
def test_readme_without_exactly_one_block_is_refused(text):
    with pytest.raises(ValueError, match="exactly one"):
        replace_readme_block(text, "x")


def test_a_playbook_recap_gives_the_changed_count_of_every_host():
    recap = (
        "PLAY RECAP *****\n"
        "localhost                  : ok=75   changed=0    unreachable=0    failed=0\n"
        "other                      : ok=3    changed=2    unreachable=0    failed=0\n"
    )
    assert changed_count(recap) == 2
    with pytest.raises(ValueError, match="no PLAY RECAP"):
        changed_count("TASK [x] ok")


@pytest.mark.parametrize(
    ("text", "size"),
    [("312.5MiB / 23.4GiB", int(312.5 * 1024**2)), ("1.2GiB / 2GiB", int(1.2 * 1024**3)),
     ("980kB / 1GiB", 980_000), ("12B / 1GiB", 12)],
)  # fmt: skip
def test_docker_stats_memory_is_read_in_bytes(text, size):
    assert parse_memory(text) == size


def test_recreated_lists_the_services_whose_container_changed():
    before = {"mlflow": "a", "postgresql": "b", "sftp": "c"}
    assert recreated(before, {"mlflow": "x", "postgresql": "b", "sftp": "c"}) == ["mlflow"]
    assert recreated(before, before) == []
