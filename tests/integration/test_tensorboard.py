"""TensorBoard logs: what a trainer writes to $TRAINFORGE_TENSORBOARD_DIR is
synced to <artifacts>/tensorboard/ (links never followed), and `trainforge
tensorboard` fetches them per job, or says plainly what is missing."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest
import trainforge
from click.testing import CliRunner
from trainforge.artifacts import ArtifactURIs
from trainforge.backends.local.backend import LocalBackend
from trainforge.cli import main
from trainforge.storage import open_store

REPO = Path(__file__).resolve().parents[2]
CURVES = str(REPO / "tests" / "trainers" / "curves")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for variable in ("TRAINFORGE_BACKEND", "TRAINFORGE_CONFIG", "TRAINFORGE_S3_ENDPOINT_URL"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("TRAINFORGE_HOME", str(tmp_path / "home"))
    yield tmp_path / "home"


def test_tensorboard_logs_are_synced_and_fetched_per_job(home: Path, tmp_path: Path) -> None:
    with_logs = trainforge.submit_job(CURVES, hparams={"steps": 3, "delay": 0.01, "tensorboard": "true"}, name="tb-a")
    without = trainforge.submit_job(CURVES, hparams={"steps": 3, "delay": 0.01}, name="tb-b")
    with_logs.wait(timeout=120)
    without.wait(timeout=120)
    uri = ArtifactURIs.of(with_logs.describe(), LocalBackend("process").default_output()).tensorboard
    keys = sorted(o.key.rsplit("tensorboard/", 1)[1] for o in open_store(uri).list(uri))
    assert keys == ["run1/events.out.tfevents.1.test"]  # the planted link published nothing

    runner = CliRunner()
    result = runner.invoke(main, ["tensorboard", "--download", str(tmp_path / "tb"), "tb-a", "tb-b"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "tb" / "tb-a" / "run1" / "events.out.tfevents.1.test").read_bytes().endswith(b"event")
    assert "tb-b: no TensorBoard logs" in result.output
    assert runner.invoke(main, ["tensorboard", "--download", str(tmp_path / "none"), "tb-b"]).exit_code == 1
    assert runner.invoke(main, ["tensorboard", "../etc"]).exit_code == 2
    if importlib.util.find_spec("tensorboard") is None:
        missing = runner.invoke(main, ["tensorboard", "tb-a"])
        assert missing.exit_code == 4 and "TensorBoard is not installed: `pip install tensorboard`" in missing.output
