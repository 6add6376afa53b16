"""The quickstart, for real: dataset into the embedded store, the digits
example through the process backend, summary and learning-curve PNG."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from trainforge.cli import main
from trainforge.client import get_job

pytestmark = pytest.mark.slow


def test_quickstart_trains_to_090_and_writes_curves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAINFORGE_HOME", str(tmp_path / "home"))
    plot = tmp_path / "curves.png"
    result = CliRunner().invoke(main, ["quickstart", "--epochs", "8", "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    assert "Completed" in result.output and "validation accuracy" in result.output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    jobs = list((tmp_path / "home" / "jobs").iterdir())
    job = get_job(jobs[0].name)
    status = job.status()
    assert status.final_metrics["validation:accuracy"] >= 0.9
    frame = job.metrics()
    assert set(frame["name"]) == {"train:loss", "validation:accuracy"}
    assert len(frame[frame["name"] == "validation:accuracy"]) == 8
    model = job.download_model(tmp_path / "model")
    assert (model / "model.pt").is_file()
