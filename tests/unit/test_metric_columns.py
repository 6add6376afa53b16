"""The local backend's columnar metrics cache (backends/local/metric_columns.py):
the same series as the records path, appended incrementally, rebuilt when a
source is rewritten, bounded, and never led outside the run folder by links
the trainer planted."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
from trainforge.backends.local import metric_columns
from trainforge.backends.local.jobdir import JobDir
from trainforge.backends.local.records import job_metric_records
from trainforge.dashboard.api import _series_from_columns, _series_from_records
from trainforge.metrics import MetricRecord

pytestmark = pytest.mark.filterwarnings("ignore:.*malformed metric record")  # the records path, compared with


def _line(name: str, value: float, t: float, step: int | None) -> str:
    return MetricRecord(timestamp=t, name=name, value=value, step=step).to_json() + "\n"


@pytest.fixture
def jobdir(tmp_path: Path) -> JobDir:
    d = JobDir(tmp_path / "job")
    (d.run_dir / "output").mkdir(parents=True)
    return d


def _same_series(jobdir: JobDir) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The columns' series, checked equal to what the records path gives."""
    expected = _series_from_records(job_metric_records(jobdir))
    got = _series_from_columns(metric_columns.load(jobdir))
    assert sorted(got) == sorted(expected)
    for name in expected:
        np.testing.assert_array_equal(got[name][0], expected[name][0], err_msg=name)
        np.testing.assert_array_equal(got[name][1], expected[name][1], err_msg=name)
    return got


def test_columns_match_the_records_and_grow_by_the_appended_bytes_only(jobdir: JobDir, monkeypatch) -> None:
    # Scraped by regex (the supervisor) and logged by the trainer; "acc" in both:
    # the trainer's own records win. Non-finite values, a record without a step,
    # malformed lines and one still being written (no newline yet).
    jobdir.metrics_file.write_text(_line("acc", 0.1, 1, 1) + _line("loss", 2.0, 1, 1) + "not json\n"
                                   + _line("loss", math.nan, 2, 2) + _line("loss", 1.5, 3, 3))
    logged = Path(jobdir.layout.metrics_file)
    logged.write_text(_line("acc", 0.5, 5, 2) + _line("acc", 0.4, 4, 1) + '{"name": "acc", "value": true}\n'
                      + _line("lr", 0.01, 4, None) + _line("lr", 0.02, 6, None) + '{"name": "lr", "val')
    series = _same_series(jobdir)
    assert series["acc"][1].tolist() == [0.4, 0.5] and series["lr"][0].tolist() == [1.0, 2.0]
    state = metric_columns.update(jobdir)
    assert state["logged"].skipped == 1 and state["scraped"].skipped == 1
    consumed = state["logged"].offset
    assert consumed == len(logged.read_bytes()) - len('{"name": "lr", "val')  # the torn line waits

    parsed: list[bytes] = []
    original = metric_columns.parse_lines
    monkeypatch.setattr(metric_columns, "parse_lines", lambda data, *a: (parsed.append(data), original(data, *a))[1])
    with logged.open("a") as f:  # the writer finishes its line and goes on
        f.write('ue": 0.03, "timestamp": 7, "step": null}\n' + _line("acc", 0.6, 8, 3))
    series = _same_series(jobdir)
    assert parsed == [logged.read_bytes()[consumed:-1]]  # only the new bytes were parsed
    assert series["lr"][1].tolist() == [0.01, 0.02, 0.03] and series["acc"][1].tolist() == [0.4, 0.5, 0.6]
    parsed.clear()
    metric_columns.load(jobdir)
    assert parsed == []  # nothing new: nothing parsed


def test_a_rewritten_or_replaced_source_is_read_again_from_its_start(jobdir: JobDir) -> None:
    logged = Path(jobdir.layout.metrics_file)
    logged.write_text(_line("acc", 0.1, 1, 1) + _line("acc", 0.2, 2, 2))
    _same_series(jobdir)
    # Same size, other bytes (a new attempt rewrote it): not taken for an append.
    logged.write_text(_line("acc", 0.7, 1, 1) + _line("acc", 0.8, 2, 2) + _line("acc", 0.9, 3, 3))
    assert _same_series(jobdir)["acc"][1].tolist() == [0.7, 0.8, 0.9]
    logged.write_text(_line("acc", 0.3, 1, 1))  # shorter
    assert _same_series(jobdir)["acc"][1].tolist() == [0.3]
    os.unlink(logged)
    assert "acc" not in metric_columns.load(jobdir)
    folder = jobdir.path / metric_columns.FOLDER
    assert sorted(p.name for p in folder.iterdir()) == ["lock", "state.json"]  # no stale files left


def test_uncommitted_bytes_and_a_broken_state_are_repaired(jobdir: JobDir) -> None:
    logged = Path(jobdir.layout.metrics_file)
    logged.write_text("".join(_line("acc", i / 10, i, i) for i in range(1, 4)))
    _same_series(jobdir)
    folder = jobdir.path / metric_columns.FOLDER
    column = next(folder.glob("logged-*.value.f64"))
    with column.open("ab") as f:
        f.write(b"\xff" * 20)  # a writer killed after appending, before committing
    with logged.open("a") as f:
        f.write(_line("acc", 0.4, 4, 4))
    assert _same_series(jobdir)["acc"][1].tolist() == [0.1, 0.2, 0.3, 0.4]
    (folder / "state.json").write_text("{not json")
    assert _same_series(jobdir)["acc"][1].tolist() == [0.1, 0.2, 0.3, 0.4]
    mapped = metric_columns.load(jobdir)["acc"]  # a reader's map, kept past the files' life
    next(folder.glob("logged-*.time.f64")).unlink()  # a column file lost
    assert _same_series(jobdir)["acc"][1].tolist() == [0.1, 0.2, 0.3, 0.4]
    assert mapped.value.tolist() == [0.1, 0.2, 0.3, 0.4]  # its files were replaced, never cut
    assert len(list(folder.glob("*.f64"))) == 3  # one generation left


def test_bounded_the_newest_rows_survive_and_names_stay_data(jobdir: JobDir, monkeypatch) -> None:
    monkeypatch.setattr(metric_columns, "MAX_ROWS", 100)
    monkeypatch.setattr(metric_columns, "MAX_NAMES", 3)
    logged = Path(jobdir.layout.metrics_file)
    names = ["../../escape", "/etc/passwd", "a\nb", "fourth"]
    logged.write_text("".join(_line(n, 1.0, 0, 1) for n in names)
                      + "".join(_line("loss", float(i), i, i) for i in range(1, 121)))
    columns = metric_columns.load(jobdir)
    assert sorted(columns) == sorted(names[:3])  # the fourth name is over MAX_NAMES: dropped
    state = metric_columns.update(jobdir)["logged"]
    assert state.dropped == 1 + 120  # "fourth", and every loss record (a fourth name too)
    monkeypatch.setattr(metric_columns, "MAX_NAMES", 256)
    jobdir2 = JobDir(jobdir.path.parent / "job2")
    (jobdir2.run_dir / "output").mkdir(parents=True)
    Path(jobdir2.layout.metrics_file).write_text("".join(_line("loss", float(i), i, i) for i in range(1, 121)))
    loss = metric_columns.load(jobdir2)["loss"]
    assert len(loss) == 90 and loss.value[-1] == 120.0 and loss.value[0] == 31.0  # the newest 3/4 kept
    files = {p.name for p in (jobdir.path / metric_columns.FOLDER).iterdir()}
    assert all(n in ("lock", "state.json") or n.startswith("logged-") for n in files)  # names never paths
    assert not (jobdir.path.parent / "escape").exists()


def test_links_the_trainer_planted_are_never_followed(jobdir: JobDir, tmp_path: Path) -> None:
    secret = tmp_path / "secret.jsonl"
    secret.write_text(_line("stolen", 42.0, 1, 1))
    logged = Path(jobdir.layout.metrics_file)
    logged.symlink_to(secret)  # the metrics file itself
    assert metric_columns.load(jobdir) == {}
    logged.unlink()
    output = Path(jobdir.layout.metrics_file).parent
    output.rmdir()
    output.symlink_to(tmp_path)  # the folder above it
    secret.rename(tmp_path / Path(jobdir.layout.metrics_file).name)
    assert metric_columns.load(jobdir) == {}


def test_a_budget_parses_part_of_a_file_and_the_next_update_the_rest(jobdir: JobDir, monkeypatch) -> None:
    monkeypatch.setattr(metric_columns, "CHUNK", 256)  # the supervisor's budget is 16 MiB of 8 MiB chunks
    logged = Path(jobdir.layout.metrics_file)
    logged.write_text("".join(_line("loss", float(i), i, i) for i in range(1, 101)))
    first = metric_columns.update(jobdir, budget=1)["logged"]
    assert 0 < first.offset <= 256 and first.rows[0] == logged.read_bytes()[:first.offset].count(b"\n")
    assert _same_series(jobdir)["loss"][1].tolist() == [float(i) for i in range(1, 101)]
