"""The process backend end to end, through ``trainforge.submit_job``: the real
digits trainer (PyTorch on the CPU) and small purpose-built fault trainers
(tests/trainers/), each job under a detached supervisor with its state in a
fresh TRAINFORGE_HOME.

Every fault must end in a clear message and an honest status, and a job that
did not complete never reports a model artifact."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import trainforge
from trainforge.backends.local.backend import LocalBackend
from trainforge.backends.local.orphans import process_start_ticks
from trainforge.errors import (
    BackendError,
    ImageNotFound,
    JobFailed,
    JobNotFound,
    SpecError,
)
from trainforge.examples import write_digits_dataset
from trainforge.spec import Phase
from trainforge.storage import open_store

from tests.infra.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
DIGITS = REPO / "containers" / "examples" / "digits-pytorch"
SAGEMAKER_COMPAT = REPO / "containers" / "examples" / "sagemaker-compat"
FAULTS = REPO / "tests" / "trainers" / "faults"
BROKEN_IMPORT = REPO / "tests" / "trainers" / "broken-import"

DIGITS_METRICS = {"validation:accuracy": r"val_acc=([0-9.]+)", "train:loss": r"train_loss=([0-9.eE+-]+)"}
JOB_TIMEOUT = 180  # seconds a digits job may take on a busy 2-core machine


@pytest.fixture(scope="module")
def digits_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {channel: str(path) for channel, path in write_digits_dataset(tmp_path_factory.mktemp("digits")).items()}


def stored_files(home: Path, bucket: str) -> list[str]:
    root = home / "store" / bucket
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def log_text(job: trainforge.Job) -> str:
    return "\n".join(job.logs())


def wait_for_log(job: trainforge.Job, text: str, timeout: float = JOB_TIMEOUT) -> None:
    wait_until(lambda: text in log_text(job), timeout=timeout, what=f"{text!r} in the log of {job.name}")


def assert_no_model(job: trainforge.Job, tmp_path: Path) -> None:
    """A job that did not complete reports no model, and download_model says why."""
    status = job.status()
    assert status.artifacts.model is None and status.artifacts.output is None
    assert job.model_uri is None
    with pytest.raises(JobFailed) as info:
        job.download_model(tmp_path / "never")
    assert info.value.phase == status.phase.value
    assert not (tmp_path / "never").exists()


def faults(action: str, **hparams: Any) -> dict[str, Any]:
    return {"action": action, **hparams}


# --- the digits trainer, for real ----------------------------------------------------

@pytest.mark.slow
def test_digits_completes_with_metrics_model_and_artifacts(home: Path, digits_data: dict[str, str],
                                                           tmp_path: Path) -> None:
    job = trainforge.submit_job(str(DIGITS), data=digits_data, hparams={"epochs": 3},
                                metrics=DIGITS_METRICS)
    assert job.name.startswith("digits-pytorch-")
    status = job.wait(timeout=JOB_TIMEOUT)

    assert status.phase is Phase.COMPLETED and status.message == "training finished"
    assert status.attempts == 1 and status.failure_reason is None
    # the cluster's condition types (trainforge.conditions), not a phase history
    assert [c.type for c in status.conditions] == ["Created", "Scheduled", "Completed"]
    assert {c.status for c in status.conditions} == {"True"}
    assert status.start_time and status.end_time and status.billable_seconds >= 1

    # final metrics in the status: the last value of each series
    assert set(status.final_metrics) == {"validation:accuracy", "train:loss"}
    assert 0.8 < status.final_metrics["validation:accuracy"] <= 1.0

    # the whole series as a DataFrame: one record per epoch and metric (log_metric wins over regexes)
    frame = job.metrics()
    assert list(frame.columns) == ["timestamp", "name", "value", "step"]
    accuracy = frame[frame["name"] == "validation:accuracy"]
    assert accuracy["step"].tolist() == [1, 2, 3]
    assert len(frame) == 6
    assert accuracy["value"].iloc[-1] == pytest.approx(status.final_metrics["validation:accuracy"])
    assert str(frame["timestamp"].dtype) == "datetime64[ns, UTC]"

    # the model, output data, metrics and logs in the (embedded) artifact store
    assert job.model_uri == f"local://trainforge-artifacts/default/{job.name}/output/model.tar.gz"
    model = job.download_model(tmp_path / "model")
    assert sorted(p.name for p in model.iterdir()) == ["model.json", "model.pt"]
    assert json.loads((model / "model.json").read_text())["epochs"] == 3
    assert stored_files(home, "trainforge-artifacts") == sorted([
        f"default/{job.name}/output/model.tar.gz", f"default/{job.name}/output/output.tar.gz",
        f"default/{job.name}/metrics/metrics.jsonl", f"default/{job.name}/logs/algo-1-attempt-1.log"])

    # the local data was uploaded for the user, and the job reads it from there
    inputs = {i.channel: i.uri for i in job.describe().spec.inputs}
    assert inputs == {c: f"local://trainforge-data/default/{job.name}/{c}/" for c in ("train", "validation")}
    assert stored_files(home, "trainforge-data") == [f"default/{job.name}/train/digits.npz",
                                                     f"default/{job.name}/validation/digits.npz"]

    logs = log_text(job)
    assert "epoch=3 " in logs and "done: final validation accuracy" in logs


@pytest.mark.slow
def test_follow_logs_ends_with_the_job_and_other_processes_see_it(home: Path, digits_data: dict[str, str]) -> None:
    job = trainforge.submit_job(str(DIGITS), data=digits_data, name="followed",
                                hparams={"epochs": 3, "sleep_per_epoch": 1})
    followed: list[str] = []
    follower = threading.Thread(target=lambda: followed.extend(job.logs(follow=True)), daemon=True)
    follower.start()

    # Another process: the SDK there knows the job only from TRAINFORGE_HOME.
    probe = ("import json, sys, trainforge; job = trainforge.get_job(sys.argv[1]); "
             "print(json.dumps({'phase': job.phase.value, 'jobs': [j.name for j in trainforge.list_jobs()]}))")

    def look() -> dict[str, Any]:
        out = subprocess.run([sys.executable, "-c", probe, job.name], capture_output=True, text=True,
                             timeout=60, check=True)
        return dict(json.loads(out.stdout))

    wait_for_log(job, "epoch=1 ")
    seen = look()
    assert seen["jobs"] == ["followed"] and seen["phase"] == "Training"
    assert LocalBackend("process").get("followed").status.phase is Phase.TRAINING  # type: ignore[union-attr]

    follower.join(timeout=JOB_TIMEOUT)
    assert not follower.is_alive(), "logs(follow=True) did not end when the job ended"
    assert job.phase is Phase.COMPLETED  # following ended because the job did, not before
    assert [line for line in followed if line.startswith("epoch=")] == [
        line for line in log_text(job).splitlines() if line.startswith("epoch=")]
    assert followed[-1].startswith("finished in ")
    assert look() == {"phase": "Completed", "jobs": ["followed"]}
    assert trainforge.get_job("followed", backend=LocalBackend("process")).status().attempts == 1


@pytest.mark.slow
def test_retry_resumes_from_checkpoint(home: Path, digits_data: dict[str, str]) -> None:
    job = trainforge.submit_job(str(DIGITS), data=digits_data, max_attempts=2, metrics=DIGITS_METRICS,
                                checkpoints="local://checkpoints/retry/",
                                hparams={"epochs": 3, "fail_at_epoch": 2, "fail_attempts": 1})
    status = job.wait(timeout=JOB_TIMEOUT)
    assert status.phase is Phase.COMPLETED and status.attempts == 2

    logs = log_text(job)
    first, second = logs.split("--- attempt 2 ---")
    assert "simulated failure at epoch 2" in first and "epoch=1 " in first
    assert "resumed from checkpoint epoch=1" in second
    assert "epoch=1 " not in second and "epoch=3 " in second

    frame = job.metrics()
    assert frame[frame["name"] == "validation:accuracy"]["step"].tolist() == [1, 2, 3]
    assert status.artifacts.checkpoints == "local://checkpoints/retry/"
    assert "epoch-0003.pt" in stored_files(home, "checkpoints")[-1]
    assert {f"default/{job.name}/logs/algo-1-attempt-1.log", f"default/{job.name}/logs/algo-1-attempt-2.log",
            f"default/{job.name}/output/model.tar.gz"} <= set(stored_files(home, "trainforge-artifacts"))


@pytest.mark.slow
def test_stop_during_training(home: Path, digits_data: dict[str, str], tmp_path: Path) -> None:
    job = trainforge.submit_job(str(DIGITS), data=digits_data, checkpoints="local://checkpoints/stopped/",
                                hparams={"epochs": 20, "sleep_per_epoch": 2})
    wait_for_log(job, "epoch=1 ")
    job.stop()
    status = job.wait(timeout=60, raise_on_failure=False)

    assert status.phase is Phase.STOPPED
    assert status.failure_reason is not None
    assert status.failure_reason.startswith("stopped on request; trainer said: stopped by SIGTERM after epoch")
    assert status.message == status.failure_reason
    assert_no_model(job, tmp_path)
    assert not [f for f in stored_files(home, "trainforge-artifacts") if "/output/" in f]
    # what did happen is kept: logs, metrics and the checkpoint to resume from
    assert status.artifacts.logs and status.artifacts.metrics
    assert any(f.endswith(".pt") for f in stored_files(home, "checkpoints"))
    with pytest.raises(JobFailed, match="ended Stopped: stopped on request"):
        job.wait(timeout=1)
    job.stop()  # stopping a finished job is a no-op
    assert job.phase is Phase.STOPPED


# --- faults, with small trainers ---------------------------------------------------------

def test_max_runtime_ends_the_job_failed(home: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    job = trainforge.submit_job(str(FAULTS), hparams=faults("sleep", seconds=120), max_runtime_seconds=2)
    status = job.wait(timeout=60, raise_on_failure=False)
    assert time.monotonic() - started < 30
    assert status.phase is Phase.FAILED
    assert status.failure_reason == "MaxRuntimeExceeded: training ran past spec.stopping.maxRuntimeSeconds=2"
    assert_no_model(job, tmp_path)


def test_trainer_ignoring_sigterm_is_killed_after_the_grace_period(home: Path, tmp_path: Path) -> None:
    job = trainforge.submit({
        "metadata": {"name": "stubborn"},
        "spec": {"image": str(FAULTS), "hyperparameters": faults("sleep", seconds=120, ignore_sigterm="true"),
                 "stopping": {"gracePeriodSeconds": 1}},
    })
    wait_for_log(job, "sleeping", timeout=60)
    job.stop()
    status = job.wait(timeout=30, raise_on_failure=False)
    assert status.phase is Phase.STOPPED and status.failure_reason == "stopped on request"
    assert "ignoring SIGTERM" in log_text(job)
    assert_no_model(job, tmp_path)


def test_failure_file_becomes_the_failure_reason(home: Path, tmp_path: Path) -> None:
    message = "CUDA out of memory (simulated): lower batch_size"
    job = trainforge.submit_job(str(FAULTS), hparams=faults("failure", message=message))
    with pytest.raises(JobFailed) as info:
        job.wait(timeout=60)
    assert (info.value.phase, info.value.reason) == ("Failed", message)
    assert str(info.value) == f"job {job.name} ended Failed: {message}"
    status = job.status()
    assert status.failure_reason == status.message == message and status.attempts == 1
    assert_no_model(job, tmp_path)


def test_crash_without_failure_file_names_the_exit_code(home: Path, tmp_path: Path) -> None:
    job = trainforge.submit_job(str(FAULTS), hparams=faults("exit", code=3))
    status = job.wait(timeout=60, raise_on_failure=False)
    assert status.phase is Phase.FAILED
    assert status.failure_reason == ("trainer exited with code 3 and wrote no failure file; "
                                     "last output line: about to exit without a failure file")
    assert_no_model(job, tmp_path)


def test_trainer_importing_an_unknown_module(home: Path, tmp_path: Path) -> None:
    job = trainforge.submit_job(str(BROKEN_IMPORT))
    status = job.wait(timeout=60, raise_on_failure=False)
    assert status.phase is Phase.FAILED
    assert status.failure_reason == (
        "trainer exited with code 1 and wrote no failure file; "
        "last output line: ModuleNotFoundError: No module named 'trainforge_tests_no_such_module'")
    assert "Traceback" in log_text(job)
    assert_no_model(job, tmp_path)


def test_trainer_killed_by_a_signal(home: Path, tmp_path: Path) -> None:
    job = trainforge.submit_job(str(FAULTS), hparams=faults("signal", signal=int(signal.SIGKILL)))
    status = job.wait(timeout=60, raise_on_failure=False)
    assert status.phase is Phase.FAILED
    assert status.failure_reason is not None
    assert status.failure_reason.startswith("trainer was killed by signal 9 (exit code -9)")
    assert_no_model(job, tmp_path)


def test_every_attempt_failing_ends_failed_after_max_attempts(home: Path, tmp_path: Path) -> None:
    job = trainforge.submit_job(str(FAULTS), hparams=faults("failure", message="always broken"), max_attempts=3)
    status = job.wait(timeout=60, raise_on_failure=False)
    assert (status.phase, status.attempts, status.failure_reason) == (Phase.FAILED, 3, "always broken")
    assert log_text(job).count("faults trainer: action=failure") == 3
    assert "--- attempt 3 ---" in log_text(job)
    assert_no_model(job, tmp_path)


def test_regex_metrics_and_a_model_from_a_plain_trainer(home: Path, tmp_path: Path) -> None:
    job = trainforge.submit_job(str(FAULTS), hparams=faults("ok"), metrics={"loss": r"loss=([0-9.]+)"})
    status = job.wait(timeout=60)
    assert status.final_metrics == {"loss": 0.5}
    frame = job.metrics()
    assert frame["step"].tolist() == [1, 2] and frame["value"].tolist() == [1.0, 0.5]
    assert (job.download_model(tmp_path / "m") / "model.txt").read_text() == "a model\n"
    assert status.artifacts.output is None  # the trainer wrote no output data


def test_a_failed_attempts_leftovers_do_not_ship_with_a_retry(home: Path, tmp_path: Path) -> None:
    job = trainforge.submit_job(str(FAULTS), hparams=faults("partial"), max_attempts=2)
    status = job.wait(timeout=60)
    assert status.attempts == 2
    assert sorted(p.name for p in job.download_model(tmp_path / "m").iterdir()) == ["model.txt"]
    assert status.artifacts.output is None  # attempt 1's output data is gone with it


def test_sagemaker_trainer_runs_unchanged(home: Path, tmp_path: Path) -> None:
    data = tmp_path / "rows.csv"
    data.write_text("x,y\n1,2\n3,4\n")
    job = trainforge.submit_job(str(SAGEMAKER_COMPAT), data=data, hparams={"target_column": 1})
    job.wait(timeout=60)
    model = json.loads((job.download_model(tmp_path / "m") / "model.json").read_text())
    assert (model["mean"], model["rows"]) == (3.0, 2)


def test_stop_from_another_process(home: Path, tmp_path: Path) -> None:
    job = trainforge.submit_job(str(FAULTS), hparams=faults("sleep", seconds=120))
    wait_for_log(job, "sleeping", timeout=60)
    subprocess.run([sys.executable, "-c", "import sys, trainforge; trainforge.get_job(sys.argv[1]).stop()",
                    job.name], check=True, timeout=60)
    status = job.wait(timeout=30, raise_on_failure=False)
    assert status.phase is Phase.STOPPED and status.failure_reason == "stopped on request"
    assert_no_model(job, tmp_path)


def test_dead_supervisor_is_reported_and_its_trainer_ended(home: Path, tmp_path: Path) -> None:
    job = trainforge.submit_job(str(FAULTS), hparams=faults("sleep", seconds=120))
    wait_for_log(job, "sleeping", timeout=60)
    jobdir = LocalBackend("process").jobdir(job.name)
    pid = jobdir.supervisor_pid()
    record = jobdir.read_trainer()
    assert pid is not None and record is not None and record["kind"] == "process"
    trainer = int(record["pgid"])
    assert process_start_ticks(trainer) == record["start"]  # the trainer runs
    os.kill(pid, signal.SIGKILL)
    status = wait_until(lambda: job.status() if job.phase.finished else None, timeout=30,
                        what="the dead supervisor to be noticed")
    assert status.phase is Phase.FAILED
    assert status.failure_reason == f"the local supervisor process died (see {jobdir.supervisor_log})"
    # Reported Failed, so not still training: the reader that noticed ended it.
    wait_until(lambda: process_start_ticks(trainer) is None or _zombie(trainer), timeout=10,
               what=f"trainer {trainer} to be gone")
    assert jobdir.read_trainer() is None
    assert "the supervisor died; its trainer (process group" in jobdir.supervisor_log.read_text()
    assert_no_model(job, tmp_path)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


# --- bad input, refused at submit: nothing is created or uploaded -----------------------

def assert_nothing_created(home: Path) -> None:
    assert trainforge.list_jobs() == []
    assert stored_files(home, "trainforge-data") == []


def test_unknown_trainer_directory(home: Path, tmp_path: Path, digits_data: dict[str, str]) -> None:
    missing = tmp_path / "no-such-trainer"
    with pytest.raises(ImageNotFound, match=f"'{missing}' is not a directory"):
        trainforge.submit_job(str(missing), data=digits_data)
    assert_nothing_created(home)


def test_directory_without_a_trainer_module(home: Path, tmp_path: Path, digits_data: dict[str, str]) -> None:
    (tmp_path / "src" / "trainer").mkdir(parents=True)
    with pytest.raises(ImageNotFound) as info:
        trainforge.submit_job(str(tmp_path / "src"), data=digits_data)
    assert str(info.value) == f"{tmp_path / 'src'} has no trainer module: expected {tmp_path / 'src/trainer/start.py'}"
    assert_nothing_created(home)


def test_unknown_instance_type(home: Path, digits_data: dict[str, str]) -> None:
    with pytest.raises(SpecError) as info:
        trainforge.submit_job(str(DIGITS), data=digits_data, instance="gpu-99x")
    [issue] = info.value.issues
    assert issue.path == "spec.instance.type"
    assert issue.message.startswith("unknown instance type 'gpu-99x' (known: cpu-large, cpu-small, gpu-1x")
    assert_nothing_created(home)


def test_multi_host_gpu_job_is_refused_by_the_process_backend(home: Path) -> None:
    with pytest.raises(SpecError) as info:
        trainforge.submit_job(str(FAULTS), instance={"type": "gpu-1x", "count": 2})
    [issue] = info.value.issues
    assert issue.path == "spec.instance.count" and "CPU instance types" in issue.message
    assert_nothing_created(home)


# --- several hosts: N local processes, one job ------------------------------------------

DDP_LINE = re.compile(r"^ddp rank=(\d) world=2 epoch=(\d+) param_checksum=(-?[0-9.]+)$", re.MULTILINE)


@pytest.mark.slow
def test_two_host_digits_job_trains_with_ddp(home: Path, digits_data: dict[str, str], tmp_path: Path) -> None:
    job = trainforge.submit_job(str(DIGITS), data=digits_data, hparams={"epochs": 3}, metrics=DIGITS_METRICS,
                                instance={"type": "local", "count": 2})
    status = job.wait(timeout=JOB_TIMEOUT)
    assert status.phase is Phase.COMPLETED, status.failure_reason
    jobdir = LocalBackend("process").jobdir(job.name)
    logs = {host: jobdir.log_file(1, host).read_text() for host in ("algo-1", "algo-2")}

    # both ranks joined one gloo group through the torchrun variables
    for rank, host in enumerate(logs):
        assert f"ddp: rank {rank} of 2 joined (master 127.0.0.1:" in logs[host]
        config = json.loads((jobdir.host_run_dir(host) / "input/config/resourceconfig.json").read_text())
        assert config["current_host"] == host and config["hosts"] == ["algo-1", "algo-2"]
    # gradients were all-reduced: after every epoch both ranks hold the same weights
    checksums = {(int(rank), int(epoch)): value for logs_of in logs.values()
                 for rank, epoch, value in DDP_LINE.findall(logs_of)}
    assert sorted(checksums) == [(r, e) for r in (0, 1) for e in (1, 2, 3)]
    for epoch in (1, 2, 3):
        assert checksums[(0, epoch)] == checksums[(1, epoch)]
    assert len({checksums[(0, e)] for e in (1, 2, 3)}) == 3  # and they did change: it trained

    # rank 0's model ships; the metrics are rank 0's; every host's log is uploaded
    assert 0.8 < status.final_metrics["validation:accuracy"] <= 1.0
    model = job.download_model(tmp_path / "model")
    assert sorted(p.name for p in model.iterdir()) == ["model.json", "model.pt"]
    assert not (jobdir.host_run_dir("algo-2") / "model" / "model.pt").exists()
    assert stored_files(home, "trainforge-artifacts") == sorted([
        f"default/{job.name}/output/model.tar.gz", f"default/{job.name}/output/output.tar.gz",
        f"default/{job.name}/metrics/metrics.jsonl", f"default/{job.name}/logs/algo-1-attempt-1.log",
        f"default/{job.name}/logs/algo-2-attempt-1.log"])


def test_one_host_failing_ends_the_others_and_names_it(home: Path, tmp_path: Path) -> None:
    job = trainforge.submit_job(str(FAULTS), hparams=faults("failure", message="rank 1 broke", only_host="algo-2"),
                                instance={"type": "local", "count": 3})
    status = job.wait(timeout=60, raise_on_failure=False)
    assert status.phase is Phase.FAILED
    assert status.failure_reason == "algo-2: rank 1 broke"
    jobdir = LocalBackend("process").jobdir(job.name)
    for host in ("algo-1", "algo-3"):  # ended by SIGTERM, not left sleeping their 60 s
        assert "sleeping" in jobdir.log_file(1, host).read_text()
    assert jobdir.read_trainer() is None
    assert_no_model(job, tmp_path)


def test_invalid_arguments_name_their_spec_path(home: Path) -> None:
    with pytest.raises(SpecError) as info:
        trainforge.submit_job(str(FAULTS), hparams={"bad key": 1}, max_attempts=0,
                              metrics={"loss": "no group"})
    assert [i.path for i in info.value.issues] == [
        "spec.hyperparameters.bad key (key)", "spec.metrics[0].regex", "spec.retry.maxAttempts"]
    assert_nothing_created(home)


def test_submit_job_parses_the_spec_once_with_the_uploaded_datas_uris(
        home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import trainforge.client

    parsed: list[Any] = []
    real = trainforge.client.parse_job
    monkeypatch.setattr(trainforge.client, "parse_job", lambda *a, **k: parsed.append(real(*a, **k)) or parsed[-1])
    (tmp_path / "data.csv").write_text("x\n1\n")
    job = trainforge.submit_job(str(FAULTS), data={"train": tmp_path / "data.csv"}, hparams=faults("ok"),
                                name="parsed-once")
    assert len(parsed) == 1
    [channel] = parsed[0].spec.inputs
    assert channel.uri.endswith("/default/parsed-once/train/") and job.describe().spec.inputs == [channel]
    assert job.wait(timeout=60).phase is Phase.COMPLETED


def test_missing_local_data(home: Path, tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        trainforge.submit_job(str(FAULTS), data={"train": tmp_path / "absent"})
    [issue] = info.value.issues
    assert issue.path == "data.train"
    assert f"local path '{tmp_path / 'absent'}' does not exist" in issue.message
    assert_nothing_created(home)


def test_missing_channel_data_fails_the_job_naming_channel_and_uri(home: Path, tmp_path: Path) -> None:
    job = trainforge.submit_job(str(FAULTS), data={"train": "local://datasets/nothing-here/"})
    status = job.wait(timeout=60, raise_on_failure=False)
    assert status.phase is Phase.FAILED and status.attempts == 0
    assert status.failure_reason is not None
    assert status.failure_reason.startswith("input channel 'train': no objects at local://datasets/nothing-here/")
    assert [c.type for c in status.conditions] == ["Created", "Scheduled", "Failed"]
    assert_no_model(job, tmp_path)


def test_unwritable_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, digits_data: dict[str, str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("TRAINFORGE_HOME", str(blocker / "home"))
    with pytest.raises(BackendError) as info:
        trainforge.submit_job(str(FAULTS), data=digits_data)
    assert str(info.value) == (f"cannot keep local jobs in {blocker / 'home' / 'jobs'}: Not a directory "
                               f"(set TRAINFORGE_HOME to a writable folder; now {blocker / 'home'})")
    assert trainforge.list_jobs() == []


def test_unwritable_output_fails_the_job_without_artifacts(home: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    job = trainforge.submit_job(str(FAULTS), hparams=faults("ok"), output=f"file://{blocker}/models")
    status = job.wait(timeout=60, raise_on_failure=False)
    assert status.phase is Phase.FAILED
    assert status.failure_reason is not None
    assert str(blocker) in status.failure_reason and "Not a directory" in status.failure_reason
    assert [c.type for c in status.conditions] == ["Created", "Scheduled", "Failed"]
    assert_no_model(job, tmp_path)


def test_names_are_unique(home: Path) -> None:
    first = trainforge.submit_job(str(FAULTS), name="only-once", hparams=faults("ok"))
    with pytest.raises(BackendError, match="a local job named 'only-once' already exists"):
        trainforge.submit_job(str(FAULTS), name="only-once", hparams=faults("ok"))
    first.wait(timeout=60)


def test_unknown_job(home: Path) -> None:
    with pytest.raises(JobNotFound, match="no local job named 'nope'"):
        trainforge.get_job("nope")
    assert open_store("local://trainforge-data/").list("local://trainforge-data/") == []
