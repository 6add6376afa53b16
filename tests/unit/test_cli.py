"""The CLI through click's CliRunner: messages and exit codes scripts rely on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from trainforge.cli import main

TRAINER = Path(__file__).resolve().parents[2] / "bench" / "trainers" / "first-line"


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("TRAINFORGE_HOME", str(tmp_path / "home"))
    return CliRunner()


def test_invalid_spec_lists_every_problem_with_its_path(runner: CliRunner, tmp_path: Path) -> None:
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps({"metadata": {"name": "Bad"}, "spec": {
        "image": "", "inputs": [{"channel": "train", "uri": "ftp://x/y"}],
        "metrics": [{"name": "acc", "regex": "acc=[0-9]+"}]}}))
    result = runner.invoke(main, ["submit", str(spec)])
    assert result.exit_code == 2
    for path in ("metadata.name", "spec.image", "spec.inputs[0].uri", "spec.metrics[0].regex"):
        assert path in result.output
    assert str(spec) in result.output


def test_missing_spec_file_is_a_clear_error(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["submit", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "nope.yaml" in result.output and "file not found" in result.output


def test_unknown_job_exits_3(runner: CliRunner) -> None:
    for command in (["status", "ghost"], ["logs", "ghost"], ["stop", "ghost"], ["metrics", "ghost"]):
        result = runner.invoke(main, command)
        assert result.exit_code == 3, command
        assert "no local job named 'ghost'" in result.output


def test_unknown_trainer_directory_is_invalid_input(runner: CliRunner, tmp_path: Path) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text(f"metadata: {{name: a}}\nspec: {{image: {tmp_path}}}\n")
    result = runner.invoke(main, ["submit", str(spec)])
    assert result.exit_code == 2
    assert "no trainer module" in result.output


def test_submit_wait_status_list_logs_json(runner: CliRunner, tmp_path: Path) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text(f"metadata: {{name: hello}}\nspec: {{image: {TRAINER}}}\n")
    result = runner.invoke(main, ["submit", str(spec), "--wait", "-o", "json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["status"]["phase"] == "Completed"
    assert document["status"]["artifacts"]["model"].endswith("/hello/output/model.tar.gz")

    listed = json.loads(runner.invoke(main, ["list", "-o", "json"]).output)
    assert [j["metadata"]["name"] for j in listed] == ["hello"]
    logs = runner.invoke(main, ["logs", "hello"])
    assert logs.exit_code == 0 and "trainer started" in logs.output
    status = runner.invoke(main, ["status", "hello"])
    assert "Completed" in status.output and "model.tar.gz" in status.output
    again = runner.invoke(main, ["submit", str(spec)])
    assert again.exit_code == 2 and "already exists" in again.output  # a taken name is invalid input


def test_schema_command_prints_the_json_schema(runner: CliRunner) -> None:
    result = runner.invoke(main, ["schema"])
    schema = json.loads(result.output)
    assert "spec" in schema["properties"] and "metadata" in schema["required"]


def test_init_writes_a_project_and_refuses_to_overwrite(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["init", "my-model", "--dir", str(tmp_path / "proj")])
    assert result.exit_code == 0, result.output
    for name in ("trainer/start.py", "Dockerfile", "job.json", ".dockerignore", "README.md"):
        assert (tmp_path / "proj" / name).is_file(), name
    again = runner.invoke(main, ["init", "my-model", "--dir", str(tmp_path / "proj")])
    assert again.exit_code != 0 and "not empty" in again.output


def test_build_without_dockerfile_names_the_file(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["build", str(tmp_path), "-t", "x:1"])
    assert result.exit_code != 0
    assert "Dockerfile" in result.output


FAULTS = Path(__file__).resolve().parents[2] / "tests" / "trainers" / "faults"


def faults_spec(tmp_path: Path, name: str, **hyperparameters: str) -> Path:
    spec = tmp_path / f"{name}.json"
    spec.write_text(json.dumps({"metadata": {"name": name}, "spec": {
        "image": str(FAULTS), "hyperparameters": hyperparameters,
        "stopping": {"gracePeriodSeconds": 2}}}))
    return spec


def test_wait_timeout_is_kept_while_following_a_silent_trainer(runner: CliRunner, tmp_path: Path) -> None:
    spec = faults_spec(tmp_path, "silent", action="sleep", seconds="600")
    try:
        result = runner.invoke(main, ["submit", str(spec), "--wait", "--timeout", "3"])
        assert result.exit_code == 124, result.output
        assert "sleeping" in result.output  # the log was followed meanwhile
        assert result.output.splitlines()[-1] == (
            "error: job silent still Training after 3.0 s; it goes on running (trainforge stop silent)")
    finally:
        assert runner.invoke(main, ["stop", "silent"]).exit_code == 0


def test_failed_job_exit_codes_and_json_everywhere(runner: CliRunner, tmp_path: Path) -> None:
    spec = faults_spec(tmp_path, "broken", action="failure", message="the data is bad")
    result = runner.invoke(main, ["submit", str(spec), "--wait"])
    assert result.exit_code == 1, result.output
    assert "the data is bad" in result.output
    assert runner.invoke(main, ["status", "broken"]).exit_code == 1
    assert json.loads(runner.invoke(main, ["status", "broken", "-o", "json"]).output)["status"]["phase"] == "Failed"
    followed = runner.invoke(main, ["logs", "-f", "broken"])
    assert followed.exit_code == 1 and "action=failure" in followed.output
    assert runner.invoke(main, ["logs", "broken"]).exit_code == 0  # not following: it only prints
    lines = runner.invoke(main, ["logs", "broken", "-o", "json"]).output.splitlines()
    assert json.loads(lines[0]) == {"line": "faults trainer: action=failure attempt=1"}
    stopped = runner.invoke(main, ["stop", "broken", "-o", "json"])
    assert stopped.exit_code == 0 and json.loads(stopped.output) == {"name": "broken", "phase": "Failed"}
    assert "properties" in json.loads(runner.invoke(main, ["schema", "-o", "json"]).output)


def test_plot_of_a_job_without_metrics(runner: CliRunner, tmp_path: Path) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text(f"metadata: {{name: quiet}}\nspec: {{image: {TRAINER}}}\n")
    assert runner.invoke(main, ["submit", str(spec), "--wait"]).exit_code == 0
    result = runner.invoke(main, ["metrics", "quiet", "--plot", str(tmp_path / "curves.png")])
    assert result.exit_code == 0, result.output
    assert "no plot written: job quiet has no metrics recorded yet" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "curves.png").exists()


def test_a_shared_checkpoint_location_is_pointed_out(runner: CliRunner, tmp_path: Path) -> None:
    for name, uri, shared in (("own", "local://ckpt/{job}/", False), ("shared", "local://ckpt/all/", True)):
        spec = tmp_path / f"{name}.json"
        spec.write_text(json.dumps({"metadata": {"name": name}, "spec": {
            "image": str(TRAINER), "checkpoints": {"uri": uri}}}))
        result = runner.invoke(main, ["submit", str(spec), "--wait"])
        assert result.exit_code == 0, result.output
        assert ("note: spec.checkpoints.uri local://ckpt/all/ is shared by every job" in result.output) is shared
        document = json.loads(runner.invoke(main, ["status", name, "-o", "json"]).output)
        assert document["spec"]["checkpoints"]["uri"] == ("local://ckpt/all/" if shared else "local://ckpt/own/")


def test_status_lists_each_attempt_with_its_reason_inert() -> None:
    """An attempt's reason carries the pod's and the trainer's words: shown inert."""
    from trainforge.cli.render import status_lines
    from trainforge.spec import TrainingJob

    job = TrainingJob.model_validate({"metadata": {"name": "j"}, "spec": {"image": "i"}, "status": {
        "phase": "Training", "attempts": 2, "billableSeconds": 40, "attemptHistory": [
            {"attempt": 1, "outcome": "Preempted", "reason": "EvictionByEvictionAPI: [red]x\x1b[2J", "billableSeconds": 30},
            {"attempt": 2, "billableSeconds": 10}]}})
    lines = status_lines(job)
    assert r"  attempt 1: Preempted 30s  EvictionByEvictionAPI: \[red]x\x1b[2J" in lines
    assert "  attempt 2: Active 10s" in lines
