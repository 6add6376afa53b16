"""Checkpoints are per job unless a spec shares them on purpose (issue 9).

The shipped digits example and the ``trainforge init`` scaffold name their
checkpoint location with ``{job}``, so submitting the same spec twice trains
twice: the second job starts at epoch 1 instead of silently resuming from the
first one's final checkpoint. A location shared on purpose (no ``{job}``)
resumes a run made with the same settings and sets aside one made with
others. Real PyTorch on the CPU, the process backend, a fresh TRAINFORGE_HOME.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import trainforge
from trainforge.cli import main
from trainforge.examples import write_digits_dataset
from trainforge.scaffold import init
from trainforge.storage import open_store


REPO = Path(__file__).resolve().parents[2]
DIGITS = REPO / "containers" / "examples" / "digits-pytorch"
JOB_TIMEOUT = "300"


def digits_spec(home: Path, tmp_path: Path, **changes: Any) -> Path:
    """The example's own job.json, run from its source directory with 2 epochs."""
    with_data = tmp_path / "digits"
    if not with_data.exists():
        write_digits_dataset(with_data)
        store = open_store("local://datasets/digits/")
        store.ensure_bucket("local://datasets/digits/")
        store.upload_dir(str(with_data), "local://datasets/digits/")
    document = json.loads((DIGITS / "job.json").read_text())
    document["spec"]["image"] = str(DIGITS)
    document["spec"]["hyperparameters"].update({"epochs": "2", **changes.pop("hyperparameters", {})})
    document["spec"].update(changes)
    path = tmp_path / f"job-{len(list(tmp_path.glob('job-*.json')))}.json"
    path.write_text(json.dumps(document))
    return path


def run(runner: CliRunner, spec: Path) -> tuple[str, list[str]]:
    """Submit SPEC, wait for it; (job name, its log lines)."""
    result = runner.invoke(main, ["submit", str(spec), "--wait", "--timeout", JOB_TIMEOUT, "-o", "json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["status"]["phase"] == "Completed"
    name = document["metadata"]["name"]
    return name, list(trainforge.get_job(name).logs())


def epochs(log: list[str]) -> list[str]:
    return [line.split()[0] for line in log if line.startswith("epoch=")]


@pytest.mark.slow
def test_the_example_spec_run_twice_trains_twice(home: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    spec = digits_spec(home, tmp_path)
    first, first_log = run(runner, spec)
    second, second_log = run(runner, spec)
    assert first != second
    assert epochs(first_log) == epochs(second_log) == ["epoch=1", "epoch=2"]
    assert not any("resumed" in line for line in second_log)
    for name in (first, second):
        uri = trainforge.get_job(name).status().artifacts.checkpoints
        assert uri == f"local://checkpoints/digits/{name}/"
        assert open_store(uri).list(uri), uri  # each job's own checkpoints, kept


@pytest.mark.slow
def test_a_shared_location_resumes_the_same_settings_and_sets_aside_others(home: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    shared = {"checkpoints": {"uri": "local://checkpoints/digits-shared/"}}
    _, log = run(runner, digits_spec(home, tmp_path, **shared))
    assert epochs(log) == ["epoch=1", "epoch=2"]

    # Same settings, more epochs: shared on purpose, so it trains on.
    _, log = run(runner, digits_spec(home, tmp_path, hyperparameters={"epochs": "3"}, **shared))
    assert "resumed from checkpoint epoch=2" in log and epochs(log) == ["epoch=3"]

    # Another learning rate: the shared checkpoints are not this run's; it starts over.
    _, log = run(runner, digits_spec(home, tmp_path, hyperparameters={"lr": "0.1"}, **shared))
    notes = [line for line in log if line.startswith("not resuming from epoch-")]
    assert notes and "lr 0.05 -> 0.1" in notes[0], log
    assert epochs(log) == ["epoch=1", "epoch=2"]
    assert not any(line.startswith("resumed") for line in log)


def test_the_scaffold_spec_run_twice_trains_twice(home: Path, tmp_path: Path) -> None:
    project = init("twice", tmp_path / "twice")
    document = json.loads((project / "job.json").read_text())
    assert document["spec"]["checkpoints"]["uri"] == "local://checkpoints/twice/{job}/"
    document["spec"]["image"] = str(project)
    document["spec"]["hyperparameters"]["epochs"] = "3"
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps(document))
    runner = CliRunner()
    logs = [run(runner, spec)[1] for _ in range(2)]
    for log in logs:
        assert [line.split()[0] for line in log if line.startswith("epoch=")] == ["epoch=1", "epoch=2", "epoch=3"]
        assert not any("resumed" in line for line in log)
