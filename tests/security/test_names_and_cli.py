"""Issue 9, "names are names" and the CLI's promises: every lookup checks the
job name before it becomes a path or a URL, every CLI error is one printable
line with its documented exit code, and what a job's author or trainer wrote
(messages, failure reasons, metric names) never reaches a terminal raw.

Attacks run through the real CLI (click's CliRunner) and the real process
backend with a fresh TRAINFORGE_HOME; nothing is mocked."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import trainforge
from trainforge.backends.local.backend import LocalBackend
from trainforge.cli import main
from trainforge.errors import InvalidJobName, JobExists, SpecError


REPO = Path(__file__).resolve().parents[2]
FAULTS = REPO / "tests" / "trainers" / "faults"
FIRST_LINE = REPO / "bench" / "trainers" / "first-line"
ESCAPES = "\x1b[2J\x1b]0;owned\x07\r\x08\u202e"


@pytest.fixture
def runner(home: Path) -> CliRunner:
    return CliRunner()


def one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("error: "), output
    assert "Traceback" not in output
    return lines[0]


def assert_inert(text: str) -> None:
    """No control character (terminal escape, CR, backspace, bidi override) survived."""
    for char in "\x1b\x07\x08\r\u202e":
        assert char not in text, (char, text)


# --- names are names -----------------------------------------------------------------------

@pytest.fixture
def victim(home: Path) -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    """A job folder planted outside the jobs folder, reachable as ``../victim``,
    whose supervisor pid is a live process of this test."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    folder = home / "victim"
    (folder / "logs").mkdir(parents=True)
    job = {"metadata": {"name": "victim"}, "spec": {"image": str(FAULTS)}}
    (folder / "job.json").write_text(json.dumps({"job": job, "backend": {
        "kind": "process", "options": {}, "output": "local://planted/"}}))
    (folder / "status.json").write_text(json.dumps({"phase": "Training", "message": "planted status"}))
    (folder / "supervisor.pid").write_text(str(sleeper.pid))
    (folder / "logs" / "attempt-1.log").write_text("planted log line\n")
    (folder / "metrics.jsonl").write_text(json.dumps({"timestamp": 1.0, "name": "planted", "value": 1.0}) + "\n")
    (home / "jobs").mkdir(parents=True, exist_ok=True)
    try:
        yield folder, sleeper
    finally:
        sleeper.kill()
        sleeper.wait()


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("command", ["stop", "status", "logs", "metrics"])
@pytest.mark.parametrize("name", ["../victim", "../victim/", "./../victim", "x/../../victim", str(Path("/")),
                                  ".."])
def test_a_path_is_not_a_job_name(runner: CliRunner, victim: tuple[Path, subprocess.Popen[bytes]],
                                  command: str, name: str) -> None:
    folder, sleeper = victim
    before = snapshot(folder)
    result = runner.invoke(main, [command, name])
    assert result.exit_code == 2, result.output
    line = one_error_line(result.output)
    assert line.startswith(f"error: invalid job name {name!r}: expected a DNS-1123 label")
    assert "planted" not in result.output
    assert snapshot(folder) == before  # nothing written: no stop file, no status
    assert not (folder / "stop").exists()
    assert sleeper.poll() is None  # not signalled


def test_the_sdk_checks_names_before_any_lookup(home: Path, victim: tuple[Path, subprocess.Popen[bytes]]) -> None:
    folder, sleeper = victim
    before = snapshot(folder)
    backend = LocalBackend("process")
    for attempt in (
        lambda: trainforge.get_job("../victim"),
        lambda: trainforge.Job("../victim", backend),
        lambda: backend.get("../victim"),
        lambda: backend.stop("../victim"),
        lambda: list(backend.logs("../victim")),
        lambda: backend.metrics("../victim"),
        lambda: backend.delete("../victim"),
    ):
        with pytest.raises(InvalidJobName):
            attempt()
    assert snapshot(folder) == before and folder.is_dir() and sleeper.poll() is None
    # InvalidJobName is a SpecError: a caller catching bad input catches it too.
    assert issubclass(InvalidJobName, SpecError)


def test_a_planted_folder_in_the_jobs_folder_is_not_listed(runner: CliRunner, home: Path) -> None:
    odd = home / "jobs" / "Not A Name"
    odd.mkdir(parents=True)
    (odd / "job.json").write_text("{}")
    result = runner.invoke(main, ["list", "-o", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == []


def test_kubernetes_backend_checks_names_before_the_api(tmp_path: Path) -> None:
    from kubernetes import client

    from trainforge.backends.kubernetes import KubernetesBackend
    from trainforge.config import load_settings

    configuration = client.Configuration()
    configuration.host = "https://127.0.0.1:1"  # nothing listens: a request would fail differently
    backend = KubernetesBackend(load_settings(), namespace="default", api_client=client.ApiClient(configuration))
    for attempt in (lambda: backend.get("../../secrets/x"), lambda: backend.stop("a/b"),
                    lambda: list(backend.logs("x,y")), lambda: backend.metrics("UPPER")):
        with pytest.raises(InvalidJobName):
            attempt()


@pytest.mark.parametrize("name", ["../x", "Bad", "a" * 64, "x\x1b[2J", "-x", "", "x" * 100_000])
def test_submit_name_override_is_checked(runner: CliRunner, home: Path, tmp_path: Path, name: str) -> None:
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps({"metadata": {"name": "fine"}, "spec": {"image": str(FIRST_LINE)}}))
    result = runner.invoke(main, ["submit", str(spec), "--name", name])
    assert result.exit_code == 2, result.output
    line = one_error_line(result.output)
    assert line.startswith("error: invalid job name ")
    assert_inert(line)
    assert len(line) < 300
    assert not (home / "x").exists() and not (home / "jobs").exists()


# --- duplicate names: refused before any upload ---------------------------------------------

def test_a_rejected_duplicate_uploads_nothing_into_the_existing_jobs_input(home: Path, tmp_path: Path) -> None:
    first_data = tmp_path / "first"
    first_data.mkdir()
    (first_data / "train.csv").write_text("1,2\n")
    first = trainforge.submit_job(str(FAULTS), data=first_data, name="taken", hparams={"action": "ok"})
    first.wait(timeout=120)
    store = home / "store" / "trainforge-data"
    before = snapshot(store)
    other = tmp_path / "other"
    other.mkdir()
    (other / "train.csv").write_text("OVERWRITTEN\n")
    (other / "extra.csv").write_text("new file\n")
    with pytest.raises(JobExists, match="a local job named 'taken' already exists"):
        trainforge.submit_job(str(FAULTS), data=other, name="taken", hparams={"action": "ok"})
    assert snapshot(store) == before


def test_a_duplicate_name_is_invalid_input_on_the_cli(runner: CliRunner, tmp_path: Path) -> None:
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps({"metadata": {"name": "twice"}, "spec": {"image": str(FIRST_LINE)}}))
    assert runner.invoke(main, ["submit", str(spec), "--wait"]).exit_code == 0
    again = runner.invoke(main, ["submit", str(spec)])
    assert again.exit_code == 2
    assert "a local job named 'twice' already exists" in one_error_line(again.output)


# --- hostile text from the job: never printed raw -------------------------------------------

def test_status_and_list_escape_what_the_trainer_wrote(runner: CliRunner, tmp_path: Path) -> None:
    message = f"boom {ESCAPES} [/bold] [red]x[/red]"
    job = trainforge.submit_job(str(FAULTS), name="hostile", hparams={"action": "failure", "message": message},
                                metrics={f"loss{ESCAPES[:4]}": "nothing=([0-9]+)"})
    job.wait(timeout=120, raise_on_failure=False)
    status = runner.invoke(main, ["status", "hostile"])
    assert status.exit_code == 1, status.output  # it ended Failed
    assert "Traceback" not in status.output
    assert_inert(status.output)
    assert "\\x1b[2J" in status.output and "[/bold]" in status.output  # shown, escaped, not interpreted
    listed = runner.invoke(main, ["list"])
    assert listed.exit_code == 0 and "hostile" in listed.output
    assert_inert(listed.output)
    # JSON keeps the exact text for scripts (json escapes control characters itself).
    document = json.loads(runner.invoke(main, ["status", "hostile", "-o", "json"]).output)
    assert "\x1b[2J\x1b]0;owned\x07" in document["status"]["failureReason"]


def test_metric_names_from_the_trainer_are_escaped(runner: CliRunner, home: Path) -> None:
    job = trainforge.submit_job(str(FAULTS), name="metric-names", hparams={"action": "ok"},
                                metrics={f"\x1b[31mloss{ESCAPES.replace(chr(13), '')}": "loss=([0-9.]+)"})
    job.wait(timeout=120)
    for command in (["metrics", "metric-names"], ["status", "metric-names"], ["list"]):
        result = runner.invoke(main, command)
        assert result.exit_code == 0, result.output
        assert_inert(result.output)
    assert "\\x1b[31mloss" in runner.invoke(main, ["metrics", "metric-names"]).output


# --- hostile spec files: one line, exit 2, the field path ------------------------------------

def submit_spec(runner: CliRunner, path: Path, *extra: str) -> str:
    result = runner.invoke(main, ["submit", str(path), *extra])
    assert result.exit_code == 2, result.output
    return one_error_line(result.output)


def spec_with(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_deeply_nested_documents(runner: CliRunner, tmp_path: Path) -> None:
    deep = "[" * 40 + "]" * 40
    line = submit_spec(runner, spec_with(tmp_path, "deep.json", json.dumps(
        {"metadata": {"name": "a"}, "spec": {"image": "x"}})[:-2] + f', "hyperparameters": {{"a": {deep}}}}}}}'))
    assert "spec.hyperparameters.a[0][0]" in line and "nested more than 32 levels deep" in line
    for name, text in (("very.json", '{"a": ' + "[" * 200_000 + "]" * 200_000 + "}"),
                       ("very.yaml", "a: " + "[" * 50_000 + "]" * 50_000 + "\n")):
        assert "nested too deeply to read" in submit_spec(runner, spec_with(tmp_path, name, text))


@pytest.mark.parametrize("suffix,text,path", [
    (".json", '{"metadata": {"name": "a"}, "spec": {"image": "x", "hyperparameters": {"lr": 1%s}}}',
     "spec.hyperparameters.lr"),
    (".yaml", "metadata: {name: a}\nspec: {image: x, hyperparameters: {lr: 1%s}}\n", "spec.hyperparameters.lr"),
    (".json", '{"metadata": {"name": "a"}, "spec": {"image": "x", "instance": {"count": 1%s}}}',
     "spec.instance.count"),
    (".yaml", "metadata: {name: a}\nspec: {image: x, stopping: {maxRuntimeSeconds: -1%s}}\n",
     "spec.stopping.maxRuntimeSeconds"),
])
def test_huge_integers(runner: CliRunner, tmp_path: Path, suffix: str, text: str, path: str) -> None:
    line = submit_spec(runner, spec_with(tmp_path, "job" + suffix, text % ("0" * 5000)))
    assert f"{path}: a number of 5001 digits (at most 4300)" in line


def test_huge_integer_through_the_sdk(home: Path) -> None:
    with pytest.raises(SpecError) as info:
        trainforge.submit_job(str(FAULTS), instance={"type": "local", "count": 10 ** 5000})
    assert [i.path for i in info.value.issues] == ["spec.instance.count"]
    assert len(str(info.value)) < 300


def test_yaml_alias_bomb_is_refused_quickly(runner: CliRunner, tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    text = "\n".join(lines) + "\nmetadata: {name: a}\nspec: {image: x, hyperparameters: {h: *a8}}\n"
    line = submit_spec(runner, spec_with(tmp_path, "bomb.yaml", text))
    assert "more than 100000 values" in line


def test_a_spec_that_never_ends_is_refused(runner: CliRunner) -> None:
    assert "larger than 1024 KiB" in submit_spec(runner, Path("/dev/zero"))


def test_hyperparameters_too_large_for_an_environment(runner: CliRunner, home: Path, tmp_path: Path) -> None:
    spec = {"metadata": {"name": "big"}, "spec": {"image": str(FIRST_LINE),
                                                  "hyperparameters": {"blob": "x" * 200_000}}}
    line = submit_spec(runner, spec_with(tmp_path, "big.json", json.dumps(spec)))
    assert "spec.hyperparameters: 200012 bytes as JSON, at most 65536 (64 KiB) in all; the largest is 'blob'" in line
    assert not (home / "jobs" / "big").exists()
    with pytest.raises(SpecError) as info:
        trainforge.submit_job(str(FIRST_LINE), env={"E": "y" * 70_000})
    assert [i.path for i in info.value.issues] == ["spec.env"]
    # At the limit it runs: the trainer starts with every byte.
    fits = {f"h{i}": "v" * 6000 for i in range(10)}
    job = trainforge.submit_job(str(FIRST_LINE), hparams=fits, env={"BIG": "z" * 60_000})
    assert job.wait(timeout=120).phase.value == "Completed"


@pytest.mark.parametrize("field", ["hyperparameters", "env"])
@pytest.mark.parametrize("value", ["a\x00b", "\ud800"])
def test_values_exec_cannot_carry(field: str, value: str) -> None:
    from trainforge.spec import parse_job

    with pytest.raises(SpecError) as info:
        parse_job({"metadata": {"name": "a"}, "spec": {"image": "x", field: {"K": value}}})
    assert [i.path for i in info.value.issues] == [f"spec.{field}"]


def test_validate_command(runner: CliRunner, tmp_path: Path) -> None:
    good = spec_with(tmp_path, "good.yaml", "metadata: {name: ok}\nspec: {image: x}\n")
    result = runner.invoke(main, ["validate", str(good)])
    assert result.exit_code == 0 and "a valid TrainingJob" in result.output
    assert json.loads(runner.invoke(main, ["validate", str(good), "-o", "json"]).output)["metadata"]["name"] == "ok"
    bad = spec_with(tmp_path, "bad.yaml", "metadata: {name: ok}\nspec: {image: x, retry: {maxAttempts: 0}}\n")
    result = runner.invoke(main, ["validate", str(bad)])
    assert result.exit_code == 2
    assert "spec.retry.maxAttempts: Input should be greater than or equal to 1" in one_error_line(result.output)


# --- GPU instance types on the process backend: never CPU while SM_NUM_GPUS says GPU -------------

def env_trainer(tmp_path: Path) -> Path:
    source = tmp_path / "env-trainer"
    (source / "trainer").mkdir(parents=True)
    (source / "trainer" / "__init__.py").write_text("")
    (source / "trainer" / "start.py").write_text(
        "import os\nprint('gpus=%s visible=%r' % (os.environ['SM_NUM_GPUS'], "
        "os.environ.get('CUDA_VISIBLE_DEVICES')), flush=True)\n")
    return source


def test_visible_gpus_reads_the_driver_and_cuda_visible_devices(tmp_path: Path) -> None:
    from trainforge.backends.local.launchers import visible_gpus

    driver = tmp_path / "gpus"
    assert visible_gpus({}, driver) == []  # no NVIDIA driver at all
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "0,1"}, driver) == []
    for address in ("0000:17:00.0", "0000:65:00.0"):
        (driver / address).mkdir(parents=True)
    assert visible_gpus({}, driver) == ["0", "1"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "1"}, driver) == ["1"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}, driver) == []
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "0,-1,1"}, driver) == ["0"]


def test_a_gpu_job_without_gpus_is_refused_or_runs_on_the_cpu_saying_so(runner: CliRunner, home: Path,
                                                                         tmp_path: Path) -> None:
    from trainforge.backends import get_backend
    from trainforge.backends.local.launchers import visible_gpus
    from trainforge.errors import BackendError

    if visible_gpus():
        pytest.skip("this machine has NVIDIA GPUs")
    source = env_trainer(tmp_path)
    with pytest.raises(BackendError, match=r"asks for 1 GPU\(s\), but the process backend runs it on this "
                                           r"machine, where 0 NVIDIA GPU\(s\) are visible\. Pick a CPU"):
        trainforge.submit_job(str(source), instance="gpu-1x", data=str(tmp_path))
    assert trainforge.list_jobs() == [] and not (home / "store").exists()  # nothing uploaded either
    spec = spec_with(tmp_path, "gpu.json", json.dumps(
        {"metadata": {"name": "gpu"}, "spec": {"image": str(source), "instance": {"type": "gpu-1x"}}}))
    result = runner.invoke(main, ["submit", str(spec)])
    assert result.exit_code == 4 and "on_missing_gpus='cpu'" in one_error_line(result.output)

    job = trainforge.submit_job(str(source), instance="gpu-1x",
                                backend=get_backend("process", on_missing_gpus="cpu"))
    assert job.wait(timeout=120).phase.value == "Completed"
    log = list(job.logs())
    assert log[0].startswith("trainforge: warning: the job asks for 1 GPU(s)")
    assert "gpus=0 visible=''" in log


def test_a_gpu_job_gets_the_gpus_it_asked_for(home: Path, tmp_path: Path) -> None:
    from trainforge.backends.local.launchers import visible_gpus

    if not visible_gpus():
        pytest.skip("needs a machine with an NVIDIA GPU")
    job = trainforge.submit_job(str(env_trainer(tmp_path)), instance="gpu-1x")
    assert job.wait(timeout=120).phase.value == "Completed"
    assert f"gpus=1 visible={visible_gpus()[0]!r}" in list(job.logs())


def test_a_damaged_job_folder_is_one_line_and_does_not_hide_the_others(runner: CliRunner, home: Path,
                                                                        tmp_path: Path) -> None:
    spec = spec_with(tmp_path, "fine.json", json.dumps({"metadata": {"name": "fine"}, "spec": {"image": str(FIRST_LINE)}}))
    assert runner.invoke(main, ["submit", str(spec), "--wait"]).exit_code == 0
    for name, files in (("garbled", {"job.json": "{not json"}),
                        ("no-job", {"job.json": "[1, 2]"}),
                        ("bad-status", {"job.json": (home / "jobs" / "fine" / "job.json").read_text(),
                                        "status.json": '{"phase": "\x1b[2J"}'})):
        folder = home / "jobs" / name
        folder.mkdir()
        for file, text in files.items():
            (folder / file).write_text(text)
        result = runner.invoke(main, ["status", name])
        assert result.exit_code == 4, result.output
        assert str(folder) in one_error_line(result.output)
        assert_inert(result.output)
    listed = runner.invoke(main, ["list", "-o", "json"])
    assert listed.exit_code == 0 and [j["metadata"]["name"] for j in json.loads(listed.output)] == ["fine"]
