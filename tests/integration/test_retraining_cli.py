"""``trainforge gate``, ``retrain`` and ``models`` through click's CliRunner on
real process-backend jobs (a trainer that reports the accuracy it is given) and
the embedded store: the exit codes a pipeline branches on, the report, and the
refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.integration.local_jobs import stop_leftovers
from trainforge.cli import main

TRAINER = Path(__file__).resolve().parents[1] / "trainers" / "scripted-metrics"


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("TRAINFORGE_HOME", str(tmp_path / "home"))
    for variable in ("TRAINFORGE_REGISTRY", "TRAINFORGE_CONFIG", "TRAINFORGE_BACKEND", "GITHUB_SHA", "CI_COMMIT_SHA"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.chdir(tmp_path)
    yield CliRunner()
    stop_leftovers()


def spec(tmp_path: Path, accuracy: float, name: str | None = None, fail: bool = False) -> Path:
    path = tmp_path / f"job-{accuracy}-{name}.json"
    metadata = {"name": name} if name else {"generateName": "scripted-"}
    path.write_text(json.dumps({"metadata": metadata, "spec": {
        "image": str(TRAINER), "hyperparameters": {"accuracy": str(accuracy), "fail": "1" if fail else "0"}}}))
    return path


def run(runner: CliRunner, *args: str) -> Any:
    return runner.invoke(main, list(args), catch_exceptions=False)


def test_gate_exit_codes_report_and_champion(runner: CliRunner, tmp_path: Path) -> None:
    assert run(runner, "submit", str(spec(tmp_path, 0.95, "good")), "--wait").exit_code == 0
    passed = run(runner, "gate", "good", "--metric", "validation:accuracy", "--min", "0.9",
                 "--report", "gate/report.md")
    assert passed.exit_code == 0, passed.output
    report = (tmp_path / "gate" / "report.md").read_text()
    assert "Gate passed: good" in report and "| **validation:accuracy** | 0.95 |" in report
    assert "![learning curves of good](report-curves.png)" in report
    assert (tmp_path / "gate" / "report-curves.png").read_bytes().startswith(b"\x89PNG")

    failed = run(runner, "gate", "good", "--metric", "validation:accuracy", "--min", "0.99")
    assert failed.exit_code == 5
    assert "Gate FAILED: good" in failed.stdout and "gate FAIL: validation:accuracy = 0.95 (at least 0.99)" \
        in failed.stderr

    missing = run(runner, "gate", "good", "--metric", "test:accuracy", "--min", "0.1")
    assert missing.exit_code == 2
    assert "job good never reported metric 'test:accuracy' (it reported: train:loss, validation:accuracy)" \
        in missing.stderr
    assert run(runner, "gate", "good", "--metric", "validation:accuracy").exit_code == 2  # no rule at all

    # Against the champion: a first run has none and passes; then regressions count.
    first = run(runner, "gate", "good", "--metric", "validation:accuracy", "--vs", "digits@production")
    assert first.exit_code == 0 and "no champion yet" in first.stdout
    registered = run(runner, "models", "register", "good", "--name", "digits", "--promote-to", "production")
    assert registered.exit_code == 0 and registered.stdout.strip() == "digits@1"
    assert run(runner, "submit", str(spec(tmp_path, 0.93, "worse")), "--wait").exit_code == 0
    regressed = run(runner, "gate", "worse", "--metric", "validation:accuracy", "--vs", "digits@production",
                    "--max-regression", "0.005", "-o", "json")
    assert regressed.exit_code == 5
    verdict = json.loads(regressed.stdout)
    assert verdict["champion"] == {"ref": "digits@production", "version": 1, "value": 0.95}
    assert verdict["checks"][0]["passed"] is False and "worse by 0.02" in verdict["checks"][0]["detail"]
    assert run(runner, "gate", "worse", "--metric", "validation:accuracy", "--vs", "digits@production",
               "--max-regression", "0.05").exit_code == 0
    # lower is better: train:loss 0.07 against the champion's 0.05
    assert run(runner, "gate", "worse", "--metric", "train:loss", "--direction", "minimize",
               "--vs", "digits@1").exit_code == 5

    assert run(runner, "submit", str(spec(tmp_path, 0.99, "broken", fail=True)), "--wait").exit_code == 1
    assert run(runner, "gate", "broken", "--metric", "validation:accuracy", "--min", "0").exit_code == 1
    refused = run(runner, "models", "register", "broken", "--name", "digits")
    assert refused.exit_code == 2 and "job broken is Failed (scripted failure): only a Completed job" \
        in refused.stderr


def test_retrain_then_models_commands(runner: CliRunner, tmp_path: Path) -> None:
    job = spec(tmp_path, 0.95)
    gate = ["--metric", "validation:accuracy", "--min", "0.5", "--max-regression", "0.01"]
    done = run(runner, "retrain", str(job), "--model", "digits", *gate, "--promote-to", "production", "-o", "json")
    assert done.exit_code == 0, done.output
    outcome = json.loads(done.stdout)
    assert outcome["registered"]["version"] == 1 and outcome["promoted"] == {"alias": "production", "from": None,
                                                                            "to": 1}
    assert "1/4 submitted" in done.stderr and "step=3 val_acc=0.9500" in done.stderr  # progress: steps, the log
    assert "4/4 promoted digits@production: - -> 1" in done.stderr

    worse = run(runner, "retrain", str(job), "--model", "digits", *gate, "--promote-to", "production",
                "--hp", "accuracy=0.9", "--report", "report.md")
    assert worse.exit_code == 5  # gated against production: 0.05 worse, 0.01 allowed
    assert "Not registered: the gate refused it." in (tmp_path / "report.md").read_text()
    listed = json.loads(run(runner, "models", "list", "digits", "-o", "json").stdout)
    assert [v["version"] for v in listed["versions"]] == [1] and listed["aliases"] == {"production": 1}
    assert run(runner, "retrain", str(job), "--model", "digits", *gate, "--hp", "bad name=1").exit_code == 2

    better = run(runner, "retrain", str(job), "--model", "digits", *gate, "--hp", "accuracy=0.97")
    assert better.exit_code == 0  # registered, no --promote-to: production stays
    table = run(runner, "models", "list", "digits")
    assert table.exit_code == 0 and table.stdout.split("\n")[1].split()[:2] == ["1", "production"]
    listed = json.loads(run(runner, "models", "list", "digits", "-o", "json").stdout)
    assert listed["versions"][1]["lineage"]["metrics"]["validation:accuracy"] == 0.97
    assert listed["versions"][1]["lineage"]["hyperparameters"]["accuracy"] == "0.97"

    assert run(runner, "models", "promote", "digits", "2", "--to", "production", "--expect", "2").exit_code == 6
    moved = run(runner, "models", "promote", "digits", "2", "--to", "production", "--expect", "1")
    assert moved.exit_code == 0 and "digits@production: 1 -> 2" in moved.stderr
    shown = run(runner, "models", "show", "digits@production")
    assert "model       digits@2  (production)" in shown.stdout
    assert "the process backend runs a trainer source directory" in shown.stdout

    downloaded = run(runner, "models", "download", "digits@1", "model")
    assert downloaded.exit_code == 0
    assert (tmp_path / "model" / "model.txt").read_text() == "accuracy 0.95\n"

    assert run(runner, "models", "show", "digits@candidate").exit_code == 3
    assert run(runner, "models", "show", "ghost").exit_code == 3
    for bad in ("../digits", "digits@../x", "Digits"):
        result = run(runner, "models", "show", bad)
        assert result.exit_code == 2 and "invalid" in result.stderr
