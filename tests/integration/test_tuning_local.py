"""Tuning jobs on the process backend, end to end: the real digits trainer
(PyTorch on the CPU) as every trial, a detached tuning supervisor driving
them, each scenario in a fresh TRAINFORGE_HOME."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner

import trainforge
from trainforge.cli import main
from trainforge.examples import write_digits_dataset
from trainforge.spec import Phase
from trainforge.tuning_client import TuningJobHandle

from tests.infra.waiting import wait_until

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
DIGITS = REPO / "containers" / "examples" / "digits-pytorch"
ACCURACY = {"validation:accuracy": r"val_acc=([0-9.]+)"}
TIMEOUT = 420  # a whole small tuning job on a busy 2-core machine


@pytest.fixture(scope="module")
def digits_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {channel: str(path) for channel, path in write_digits_dataset(tmp_path_factory.mktemp("digits")).items()}


def trial_phases(handle: TuningJobHandle) -> dict[int, str]:
    return {n: job.status.phase.value for n, job in handle.backend.trial_jobs(handle.name).items()
            if job.status}


def test_bayesian_tuning_finds_a_good_digits_model_and_reports_every_trial(
        home: Path, digits_data: dict[str, str], tmp_path: Path) -> None:
    handle = trainforge.submit_tuning_job(
        str(DIGITS), digits_data, "local",
        {"lr": trainforge.Continuous(0.05, 0.5, "Log"), "batch_size": trainforge.Categorical([32, 64])},
        "validation:accuracy", hparams={"epochs": 8}, metrics=ACCURACY,
        strategy="Bayesian", seed=3, max_trials=4, max_parallel=2, name="digits-tpe")
    status = handle.wait(timeout=TIMEOUT)
    assert status.phase == "Completed" and status.message == "all 4 trials finished"
    assert (status.trials.completed, status.trials.failed, status.trials.stopped) == (4, 0, 0)
    assert status.best_trial is not None and status.best_trial.objective >= 0.95

    frame = handle.dataframe()
    assert list(frame["TrainingJobName"]) == [f"digits-tpe-{n:03d}" for n in range(4)]
    assert set(frame.columns) >= {"lr", "batch_size", "TrainingJobName", "TrainingJobStatus", "FinalObjectiveValue",
                                  "TrainingStartTime", "TrainingEndTime", "TrainingElapsedTimeSeconds",
                                  "BillableSeconds", "Cost"}
    assert frame["FinalObjectiveValue"].max() == pytest.approx(status.best_trial.objective)
    assert all(0.03 <= lr <= 0.5 for lr in frame["lr"]) and set(frame["batch_size"]) <= {"32", "64"}
    assert (frame["TrainingElapsedTimeSeconds"] > 0).all()

    # Trials are ordinary jobs: listed, with logs and a model.
    best = handle.best_trial()
    assert best is not None and best.name == status.best_trial.name
    assert best.describe().spec.hyperparameters["epochs"] == "8"
    assert "epoch=8" in "\n".join(best.logs())
    assert (best.download_model(tmp_path / "model") / "model.pt").is_file()
    assert {j.name for j in trainforge.list_jobs()} >= set(frame["TrainingJobName"])
    assert trainforge.TuningJobAnalytics("digits-tpe").dataframe()["TrainingJobName"].tolist() == \
        frame["TrainingJobName"].tolist()

    runner = CliRunner()
    csv = runner.invoke(main, ["tuning", "trials", "digits-tpe", "-o", "csv"])
    assert csv.exit_code == 0 and csv.output.splitlines()[0].startswith("lr,batch_size,TrialNumber")
    assert len(csv.output.strip().splitlines()) == 5
    listing = runner.invoke(main, ["tuning", "list"])
    assert listing.exit_code == 0 and "digits-tpe" in listing.output and "4/4" in listing.output
    plot = runner.invoke(main, ["tuning", "plot", "digits-tpe", str(tmp_path / "tuning.png")])
    assert plot.exit_code == 0, plot.output
    assert (tmp_path / "tuning.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_hyperband_stops_losers_and_a_killed_supervisor_resumes_without_duplicates(
        home: Path, digits_data: dict[str, str]) -> None:
    handle = trainforge.submit_tuning_job(
        str(DIGITS), digits_data, "local",
        {"lr": trainforge.Continuous(1e-5, 0.5, "Log")}, "validation:accuracy",
        hparams={"epochs": 9, "sleep_per_epoch": 1.0}, metrics=ACCURACY,
        strategy="Hyperband", hyperband={"minResource": 1, "maxResource": 9, "reductionFactor": 3,
                                         "sampler": "Random"},
        seed=5, max_trials=6, max_parallel=3, name="digits-hb")
    tdir = handle.backend.dir("digits-hb")
    wait_until(lambda: len(trial_phases(handle)) >= 3, timeout=TIMEOUT, what="three trials started")
    os.kill(tdir.supervisor_pid(), signal.SIGKILL)  # type: ignore[arg-type]
    wait_until(lambda: handle.status().phase == "Failed", timeout=30, what="the dead supervisor noticed")
    assert "tuning supervisor process died" in (handle.status().failure_reason or "")
    handle.backend.resume("digits-hb")
    status = handle.wait(timeout=TIMEOUT)

    trials = handle.backend.trial_jobs("digits-hb")
    assert sorted(trials) == list(range(6)), "no trial lost, none started twice"
    assert len({t.spec.hyperparameters["lr"] for t in trials.values()}) == 6
    frame = handle.dataframe()
    stopped = frame[frame["TrainingJobStatus"] == "Stopped"]
    assert status.phase == "Completed" and status.trials.stopped == len(stopped) >= 1
    assert stopped["StopReason"].str.startswith("early stopping (successive halving)").all()
    assert stopped["FinalObjectiveValue"].isna().all(), "a stopped trial has no objective, never zero"
    # A stop decided at a rung lands within a pass or two: most stopped trials end mid-run (one
    # whose stop arrives during its last epoch finishes that epoch, as SIGTERM allows).
    ran = [sum(line.startswith("epoch=") for line in trainforge.get_job(name).logs())
           for name in stopped["TrainingJobName"]]
    assert min(ran) < 9, f"every stopped trial ran to the end: {ran}"


def test_median_rule_stops_a_trial_that_cannot_learn(home: Path, digits_data: dict[str, str]) -> None:
    # Three good learning rates first (grid order), then one that cannot learn in time.
    handle = trainforge.submit_tuning_job(
        str(DIGITS), digits_data, "local",
        {"lr": trainforge.Categorical(["0.2", "0.3", "0.25", "0.00001"])}, "validation:accuracy",
        hparams={"epochs": 12, "sleep_per_epoch": 1.0}, metrics=ACCURACY, strategy="Grid",
        early_stopping={"type": "Median", "minSteps": 3}, max_trials=4, max_parallel=4, name="digits-median")
    status = handle.wait(timeout=TIMEOUT)
    frame = handle.dataframe().set_index("lr")
    assert status.phase == "Completed"
    assert frame.loc["0.00001", "TrainingJobStatus"] == "Stopped"
    assert frame.loc["0.00001", "StopReason"].startswith("early stopping (median rule)")
    assert (frame.drop(index="0.00001")["TrainingJobStatus"] == "Completed").all()


def test_failed_trials_fail_the_tuning_job_past_max_failed(home: Path, digits_data: dict[str, str]) -> None:
    handle = trainforge.submit_tuning_job(
        str(DIGITS), digits_data, "local", {"fail_at_epoch": trainforge.Integer(1, 2)}, "validation:accuracy",
        hparams={"epochs": 3}, metrics=ACCURACY, strategy="Grid", max_trials=5, max_parallel=1, max_failed=1,
        name="digits-fail")
    status = handle.wait(timeout=TIMEOUT, raise_on_failure=False)
    assert status.phase == "Failed"
    assert status.failure_reason == "2 trials failed, more than limits.maxFailedTrials (1)"
    assert status.trials.failed == 2 and status.best_trial is None
    with pytest.raises(trainforge.JobFailed):
        handle.wait(timeout=5)


def test_a_target_value_completes_the_tuning_job_early(home: Path, digits_data: dict[str, str]) -> None:
    handle = trainforge.submit_tuning_job(
        str(DIGITS), digits_data, "local", {"lr": trainforge.Continuous(0.1, 0.3)}, "validation:accuracy",
        hparams={"epochs": 4}, metrics=ACCURACY, seed=1, max_trials=10, max_parallel=1,
        completion={"targetValue": 0.5}, name="digits-target")
    status = handle.wait(timeout=TIMEOUT)
    assert status.phase == "Completed" and status.message.startswith("trial 0 reached the target")
    assert len(handle.trials()) == 1


def test_stop_ends_the_tuning_job_and_its_running_trials(home: Path, digits_data: dict[str, str]) -> None:
    runner = CliRunner()
    handle = trainforge.submit_tuning_job(
        str(DIGITS), digits_data, "local", {"lr": trainforge.Continuous(0.1, 0.3)}, "validation:accuracy",
        hparams={"epochs": 50, "sleep_per_epoch": 1}, metrics=ACCURACY, max_trials=5, max_parallel=2,
        name="digits-stop")
    wait_until(lambda: sum(p == "Training" for p in trial_phases(handle).values()) == 2, timeout=TIMEOUT,
               what="two trials training")
    result = runner.invoke(main, ["tuning", "stop", "digits-stop", "--timeout", "120"])
    assert result.exit_code == 0, result.output
    status = handle.status()
    assert status.phase == "Stopped" and status.message == "stopped on request"
    # the controller's conditions for a tuning job (trainforge.conditions.tuning_phase)
    assert [(c.type, c.status, c.reason) for c in status.conditions] == [("Running", "False", "Stopped"),
                                                                         ("Stopped", "True", "Stopped")]
    assert all(p == Phase.STOPPED.value for p in trial_phases(handle).values())
    assert len(trial_phases(handle)) == 2


def test_tune_spec_from_the_cli(home: Path, tmp_path: Path) -> None:
    """The example's tuning.json, shrunk to two short trials, through
    ``trainforge tune SPEC --wait -o json`` (data from the quickstart's upload)."""
    import json

    from rich.console import Console

    from trainforge.quickstart import upload_dataset

    upload_dataset(Console(file=open(os.devnull, "w")))
    document = json.loads((DIGITS / "tuning.json").read_text())
    document["spec"]["trainingJobTemplate"]["image"] = str(DIGITS)
    document["spec"]["trainingJobTemplate"]["hyperparameters"]["epochs"] = "2"
    document["spec"]["limits"].update({"maxTrials": 2, "maxParallelTrials": 2})
    spec = tmp_path / "tuning.json"
    spec.write_text(json.dumps(document))
    runner = CliRunner()
    result = runner.invoke(main, ["tune", str(spec), "--name", "cli-tune", "--wait", "-o", "json"])
    assert result.exit_code == 0, result.output
    final = json.loads(result.stdout)
    assert final["metadata"]["name"] == "cli-tune" and final["status"]["phase"] == "Completed"
    assert final["status"]["trials"]["completed"] == 2
    status = runner.invoke(main, ["tuning", "status", "cli-tune", "-o", "json"])
    assert json.loads(status.stdout)["status"]["bestTrial"]["name"].startswith("cli-tune-00")
    bad = dict(document, spec={**document["spec"], "objective": {"metric": "nope"}})
    spec.write_text(json.dumps(bad))
    refused = runner.invoke(main, ["tune", str(spec)])
    assert refused.exit_code == 2
    assert "spec.objective.metric: 'nope' is not a metric of trainingJobTemplate.metrics" in refused.output
    missing = runner.invoke(main, ["tuning", "status", "no-such-tuning"])
    assert missing.exit_code == 3


def test_a_trial_stopped_before_its_supervisor_started_counts_as_stopped(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A trial stopped (SIGTERM) while its job supervisor is still starting
    (before it can take the signal) used to make the submit raise and fail the
    whole tuning job; it is a stopped trial and the search goes on."""
    import threading

    from trainforge.backends.local.backend import LocalBackend
    from trainforge.backends.local.forkstart import MODE_VARIABLE

    # A freshly exec'd supervisor spends ~100 ms importing before it takes SIGTERM;
    # a forked one is ready within a millisecond or two, which the watcher below
    # could not reliably beat (it then reads "stopped before the trainer started").
    monkeypatch.setenv(MODE_VARIABLE, "exec")

    jobs = LocalBackend("process")
    first = jobs.jobdir("race-000")
    stopped = threading.Event()

    def stop_trial_0_as_it_starts() -> None:
        wait_until(first.pid_file.exists, timeout=60, what="trial 0's supervisor spawned", interval=0.001)
        jobs.stop("race-000")
        stopped.set()

    watcher = threading.Thread(target=stop_trial_0_as_it_starts, daemon=True)
    watcher.start()
    handle = trainforge.submit_tuning_job(
        str(REPO / "tests" / "trainers" / "curves"), None, "local", {"lr": trainforge.Continuous(0.1, 0.5)},
        "val:acc", hparams={"steps": 3, "delay": 0.01}, metrics={"val:acc": r"val_acc=([0-9.]+)"},
        strategy="Random", seed=2, max_trials=3, max_parallel=1, name="race")
    status = handle.wait(timeout=120)
    watcher.join(timeout=5)
    assert stopped.is_set()
    assert status.phase == "Completed", status.message
    assert (status.trials.completed, status.trials.stopped, status.trials.failed) == (2, 1, 0)
    trial = jobs.get("race-000")
    assert trial.status is not None and trial.status.phase == Phase.STOPPED
    # The race was won: the stop came before the supervisor could take SIGTERM.
    assert trial.status.message == "stopped before its supervisor started" and not first.started
