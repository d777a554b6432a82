"""The Markdown table of `make bench` (bench/report.py) and the tracking rows it is made of."""

from __future__ import annotations

import pytest

from bench.report import (
    README_BEGIN,
    README_END,
    Point,
    Row,
    format_table,
    format_value,
    not_run,
    replace_readme_block,
)
from bench.tracking import CACHE_OFF_FLAG, rows


def test_table_has_a_line_per_row_with_value_reference_and_ratio():
    table = format_table(
        [
            Row("tracking", "4 clients: req/s", "req/s", 30.0, "stock", 10.0),
            Row("dvc", "push", "s", 2.5, "sftp", 0.5),
        ]
    ).splitlines()
    assert table[0] == "| area | measure | this stack | reference | reference value | ratio |"
    assert table[1] == "|---|---|---|---|---|---|"
    assert table[2] == "| tracking | 4 clients: req/s | 30.0 req/s | stock | 10.0 req/s | 3.00x |"
    assert table[3] == "| dvc | push | 2.50 s | sftp | 0.500 s | 5.00x |"
    assert len(table) == 4


def test_a_row_not_run_says_why_and_has_no_ratio():
    line = format_table([not_run("deploy", "warm deploy", "s", "not run (--with-deploy)")])
    assert line.splitlines()[2] == "| deploy | warm deploy | not run (--with-deploy) | - | - | - |"


def test_not_run_beside_a_measured_reference_keeps_the_reference_figure():
    row = Row("tracking", "p99", "ms", None, "stock", 250.0, "not run (--with-cache-off)")
    assert row.ratio is None
    assert "| not run (--with-cache-off) | stock | 250 ms | - |" in format_table([row])


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
    result = rows(stack, stock, None)
    measured = [r for r in result if r.value is not None]
    assert [r.measure.rsplit(": ", 1)[1] for r in measured] == ["req/s", "p50", "p99"] * 2
    assert measured[0].ratio == pytest.approx(2.0)
    assert measured[5].value == pytest.approx(300.0)  # p99 in ms
    assert measured[5].ratio == pytest.approx(0.5)
    skipped = [r for r in result if r.value is None]
    assert len(skipped) == 6
    assert all(r.missing == f"not run ({CACHE_OFF_FLAG})" for r in skipped)
    assert skipped[0].reference_value == pytest.approx(5.0)


def test_tracking_rows_with_the_cache_off_measured_have_no_gap():
    points = [Point(16, 8.0, 1.0, 2.0)]
    result = rows(points, points, points)
    assert len(result) == 6
    assert all(r.ratio == pytest.approx(1.0) for r in result)


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
