"""The dashboard's pure parts: LTTB downsampling and the runs-table query."""

from __future__ import annotations

import numpy as np
import pytest
from trainforge.dashboard.lttb import lttb
from trainforge.dashboard.query import QueryError, parse_query, project, select


def test_lttb_keeps_ends_and_spikes_and_the_requested_size() -> None:
    x = np.arange(100_000, dtype=np.float64)
    y = np.sin(x / 5000.0)
    y[31_337] = 50.0     # one spike a stride would miss
    y[77_001] = -50.0
    dx, dy = lttb(x, y, 500)
    assert len(dx) == 500 and dx[0] == 0 and dx[-1] == 99_999
    assert np.all(np.diff(dx) > 0)
    assert 50.0 in dy and -50.0 in dy
    # Short series come back whole; NaNs are dropped, not drawn.
    sx, sy = lttb(np.array([1.0, 2.0, 3.0]), np.array([1.0, np.nan, 3.0]), 100)
    assert sx.tolist() == [1.0, 3.0] and sy.tolist() == [1.0, 3.0]


def test_lttb_of_a_million_points_preselects_extremes_and_keeps_them() -> None:
    x = np.arange(1_000_003, dtype=np.float64)
    y = np.random.default_rng(0).normal(size=len(x)) * 0.01 + np.cos(x / 1e5)
    y[123_457], y[876_543], y[1] = 9.0, -9.0, 7.0  # spikes, one next to the first point
    dx, dy = lttb(x, y, 1300)
    assert len(dx) == 1300 and dx[0] == 0 and dx[-1] == 1_000_002 and np.all(np.diff(dx) > 0)
    assert {9.0, -9.0, 7.0} <= set(dy.tolist())
    assert np.array_equal(dy, y[dx.astype(np.int64)])  # real points, never averages


def _row(name: str, phase: str, lr: str | None, acc: float | None, **labels: str) -> dict:
    return {"name": name, "phase": phase, "labels": labels, "start_time": f"2026-01-01T00:00:0{name[-1]}Z",
            "hyperparameters": {} if lr is None else {"lr": lr}, "metrics": {} if acc is None else {"acc": acc},
            "tuning_job": labels.get("trainforge.dev/tuning-job")}


ROWS = [_row("r1", "Completed", "0.1", 0.9, team="a"), _row("r2", "Failed", "0.01", None, team="b"),
        _row("r3", "Completed", "1e-3", 0.95), _row("r4", "Completed", None, 0.5, team="a")]


def test_sort_by_hyperparameter_numerically_and_missing_values_last_either_way() -> None:
    for order, expected in (("asc", ["r3", "r2", "r1", "r4"]), ("desc", ["r1", "r2", "r3", "r4"])):
        _, page = select(ROWS, parse_query({"sort": "hp:lr", "order": order}))
        assert [r["name"] for r in page] == expected
    _, page = select(ROWS, parse_query({"sort": "-metric:acc"}))
    assert [r["name"] for r in page] == ["r3", "r1", "r4", "r2"]


def test_filters_pages_and_projection() -> None:
    total, page = select(ROWS, parse_query({"status": "Completed", "label": "team=a", "sort": "name", "order": "asc"}))
    assert total == 2 and [r["name"] for r in page] == ["r1", "r4"]
    total, page = select(ROWS, parse_query({"q": "lr=0.01"}))
    assert total == 1 and page[0]["name"] == "r2"
    total, page = select(ROWS, parse_query({"sort": "name", "order": "asc", "offset": "1", "limit": "2"}))
    assert total == 4 and [r["name"] for r in page] == ["r2", "r3"]
    row = project(ROWS[0], ["hp:lr", "metric:acc", "metric:none"])
    assert row["cells"] == ["0.1", 0.9, None] and "hyperparameters" not in row


@pytest.mark.parametrize("params, field", [({"status": "Sleeping"}, "status"), ({"limit": "0"}, "limit"),
                                           ({"limit": "x"}, "limit"), ({"sort": "secret"}, "sort"),
                                           ({"columns": "hp:lr,__proto__"}, "columns")])
def test_bad_parameters_are_named(params: dict[str, str], field: str) -> None:
    with pytest.raises(QueryError, match=f"^{field}:"):
        parse_query(params)
