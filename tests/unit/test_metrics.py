"""trainforge.metrics: regex parsing of log lines, the JSON-lines file, frames and plots."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from trainforge.metrics import (
    MetricParser, MetricRecord, final_values, plot_learning_curves, read_records, to_frame,
)
from trainforge.spec.models import MetricDefinition

DEFINITIONS = [
    MetricDefinition(name="validation:accuracy", regex=r"val_acc=([0-9.]+)"),
    MetricDefinition(name="train:loss", regex=r"train_loss=([0-9.eE+-]+)"),
]


def test_module_imports_neither_pandas_nor_matplotlib():
    probe = "import sys, trainforge.metrics; print(sorted(m for m in ('pandas', 'matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- MetricParser ------------------------------------------------------------------------

def test_parser_finds_every_metric_on_a_line_and_counts_steps_per_name():
    parser = MetricParser(DEFINITIONS)
    first = parser.feed("epoch=1 train_loss=0.5 val_acc=0.91\n", 100.0)
    assert first == [
        MetricRecord(timestamp=100.0, name="validation:accuracy", value=0.91, step=1),
        MetricRecord(timestamp=100.0, name="train:loss", value=0.5, step=1),
    ]
    assert parser.feed("some other log line", 101.0) == []
    assert parser.feed("train_loss=2.5e-3", 102.0) == [MetricRecord(102.0, "train:loss", 0.0025, 2)]
    assert parser.feed("epoch=3 train_loss=0.1 val_acc=0.95", 103.0)[0].step == 2


def test_parser_ignores_captures_that_are_not_numbers_without_counting_them():
    parser = MetricParser([{"name": "acc", "regex": r"acc=(\S+)"}])
    assert parser.feed("acc=1.2.3", 1.0) == []
    assert parser.feed("acc=n/a", 1.0) == []
    assert parser.feed("acc=0.8", 2.0) == [MetricRecord(2.0, "acc", 0.8, 1)]


def test_parser_splits_progress_bar_carriage_returns():
    parser = MetricParser([{"name": "loss", "regex": r"loss=([0-9.]+)"}])
    records = parser.feed("loss=0.9\rloss=0.7\rloss=0.5\n", 5.0)
    assert [(r.value, r.step) for r in records] == [(0.9, 1), (0.7, 2), (0.5, 3)]


def test_parser_optional_group_that_did_not_take_part_is_skipped():
    parser = MetricParser([{"name": "m", "regex": r"m(?:=([0-9.]+))?"}])
    assert parser.feed("m", 1.0) == []
    assert parser.feed("m=3", 1.0)[0].value == 3.0


@pytest.mark.parametrize("regex,problem", [
    (r"acc=[0-9.]+", "exactly one capture group, found 0"),
    (r"(acc)=([0-9.]+)", "exactly one capture group, found 2"),
    (r"acc=([0-9.]+", "RE2 cannot compile it (missing ): acc=([0-9.]+)"),
    (r"(a)\1", "RE2 cannot compile it (invalid escape sequence: \\1)"),
])
def test_parser_rejects_bad_regexes_naming_the_metric(regex: str, problem: str):
    with pytest.raises(ValueError, match="metric 'acc'") as caught:
        MetricParser([{"name": "acc", "regex": regex}])
    assert problem in str(caught.value)


# --- records and the JSON-lines file --------------------------------------------------------

@pytest.mark.parametrize("record", [
    MetricRecord(1700000000.25, "train:loss", 0.125, 3),
    MetricRecord(1.0, "a", -2.0, None),
    MetricRecord(1.0, "a", math.inf, 1),
    MetricRecord(1.0, "a", -math.inf, 1),
])
def test_record_json_round_trip(record: MetricRecord):
    line = record.to_json()
    assert "\n" not in line
    assert MetricRecord.from_json(line) == record


def test_nan_round_trips_as_strict_json():
    line = MetricRecord(1.0, "loss", math.nan, 2).to_json()
    assert json.loads(line)["value"] is None and "NaN" not in line
    assert math.isnan(MetricRecord.from_json(line).value)


@pytest.mark.parametrize("line,problem", [
    ('{"timestamp": 1, "value": 1}', "no name"),
    ('{"timestamp": 1, "name": "a", "value": true}', "value must be a number"),
    ('{"timestamp": 1, "name": "a", "value": "1"}', "value must be a number"),
    ('{"timestamp": 1, "name": "a", "value": null}', "value must be a number"),
    ('{"name": "a", "value": 1}', "timestamp must be a number"),
    ('{"timestamp": 1, "name": "a", "value": 1, "step": 1.5}', "step must be an integer"),
    ('[1, 2]', "JSON object"),
])
def test_from_json_says_what_is_wrong(line: str, problem: str):
    with pytest.raises(ValueError, match=problem):
        MetricRecord.from_json(line)


def test_read_records_skips_a_torn_last_line_quietly(tmp_path: Path, recwarn):
    path = tmp_path / "metrics.jsonl"
    good = [MetricRecord(1.0, "a", 1.0, 1), MetricRecord(2.0, "a", 2.0, 2)]
    path.write_text("".join(r.to_json() + "\n" for r in good) + '{"timestamp": 3.0, "name": "a", "va')
    assert read_records(path) == good
    assert len(recwarn) == 0


def test_read_records_keeps_a_complete_last_line_without_newline(tmp_path: Path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(MetricRecord(1.0, "a", 1.0, 1).to_json())
    assert read_records(path) == [MetricRecord(1.0, "a", 1.0, 1)]


def test_read_records_warns_about_a_malformed_line_in_the_middle(tmp_path: Path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(MetricRecord(1.0, "a", 1.0).to_json() + "\nnot json\n\n" + MetricRecord(2.0, "b", 2.0).to_json() + "\n")
    with pytest.warns(UserWarning, match=r"metrics.jsonl:2"):
        records = read_records(path)
    assert [r.name for r in records] == ["a", "b"]


def test_read_records_missing_file(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        read_records(tmp_path / "absent.jsonl")


def test_final_values_last_finite_value_per_name():
    records = [
        MetricRecord(1.0, "loss", 0.9, 1), MetricRecord(1.0, "acc", 0.5, 1),
        MetricRecord(2.0, "loss", 0.4, 2), MetricRecord(3.0, "loss", math.nan, 3),
        MetricRecord(3.0, "acc", 0.8, 2), MetricRecord(4.0, "diverged", math.inf, 1),
    ]
    assert final_values(records) == {"loss": 0.4, "acc": 0.8}
    assert final_values([]) == {}


# --- pandas and matplotlib at the edges -------------------------------------------------------

def test_to_frame_columns_and_types():
    records = [MetricRecord(1700000000.0, "loss", 0.5, 1), MetricRecord(1700000001.5, "acc", 0.9, None)]
    frame = to_frame(records)
    assert list(frame.columns) == ["timestamp", "name", "value", "step"]
    assert isinstance(frame["timestamp"].dtype, pd.DatetimeTZDtype) and str(frame["timestamp"].dt.tz) == "UTC"
    assert frame["timestamp"][1] == pd.Timestamp("2023-11-14 22:13:21.5", tz="UTC")
    assert frame["name"].tolist() == ["loss", "acc"]
    assert frame["value"].dtype == "float64"
    assert str(frame["step"].dtype) == "Int64"
    assert frame["step"][0] == 1 and frame["step"].isna().tolist() == [False, True]


def test_to_frame_empty_has_the_columns():
    frame = to_frame([])
    assert list(frame.columns) == ["timestamp", "name", "value", "step"] and len(frame) == 0


def test_plot_learning_curves_writes_a_png(tmp_path: Path):
    records = [MetricRecord(100.0 + i, name, v, i + 1)
               for i in range(5) for name, v in (("loss", 1.0 / (i + 1)), ("acc", 0.5 + i / 10))]
    records.append(MetricRecord(110.0, "lr", 0.1, None))  # no step: plotted against time
    out = plot_learning_curves(records, tmp_path / "plots" / "curves.png", title="digits")
    assert out == tmp_path / "plots" / "curves.png"
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert height > width  # three stacked subplots


def test_plot_learning_curves_rejects_nothing_to_plot(tmp_path: Path):
    with pytest.raises(ValueError, match="no metric records"):
        plot_learning_curves([], tmp_path / "x.png")
    with pytest.raises(ValueError, match="x must be"):
        plot_learning_curves([MetricRecord(1.0, "a", 1.0)], tmp_path / "x.png", x="epoch")  # type: ignore[arg-type]
