"""trainforge.runtime: the helpers a trainer imports inside the container."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from trainforge import contract, runtime
from trainforge.contract import HostInfo, Layout
from trainforge.instances import lookup
from trainforge.metrics import read_records
from trainforge.runtime import environment, signals
from trainforge.spec.models import InputChannel


@pytest.fixture(autouse=True)
def clean_runtime(monkeypatch: pytest.MonkeyPatch):
    """No contract variables from the outside world, no cached snapshot, our SIGTERM handler removed."""
    for name in list(os.environ):
        if name.startswith(("SM_", "TRAINFORGE_")) or name in ("TRAINING_JOB_NAME", "CUDA_VISIBLE_DEVICES"):
            monkeypatch.delenv(name)
    monkeypatch.setattr(environment, "_current", None)
    yield
    signals._reset()


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A contract tree under tmp_path, as the process backend lays it out."""
    layout = Layout(str(tmp_path / "ml"))
    for folder in layout.directories():
        os.makedirs(folder)
    monkeypatch.setenv("TRAINFORGE_ROOT", layout.root)
    return Path(layout.root)


def write_hps(root: Path, values: dict) -> None:
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps(values))


# --- the package's shape ------------------------------------------------------------

def test_public_surface_is_pinned():
    assert sorted(runtime.__all__) == sorted([
        "STOPPED_EXIT_CODE", "ChannelNotFoundError", "HyperparameterError", "Hyperparameters",
        "RuntimeContractError", "Stopped", "TrainingEnvironment", "atomic_write", "channel_path", "checkpoint_dir",
        "current", "describe_exception", "handle_stop_signals", "hyperparameters", "latest_checkpoint",
        "list_checkpoints", "log_metric", "model_dir", "on_stop", "output_data_dir", "prune_checkpoints",
        "run_trainer", "stop_requested", "stop_signal", "wait_for_stop", "write_failure",
    ])
    for name in runtime.__all__:
        assert getattr(runtime, name) is not None
    assert callable(runtime.hyperparameters)  # the function, not the submodule of a similar name


def test_import_is_stdlib_only_and_has_no_side_effects(tmp_path: Path):
    absent_root = tmp_path / "not-there"
    probe = textwrap.dedent("""
        import json, signal, sys
        before = set(sys.modules)
        import trainforge.runtime as runtime
        from trainforge.runtime import environment
        foreign = sorted(
            m for m in set(sys.modules) - before
            if m.split(".")[0] not in sys.stdlib_module_names
            and m not in ("trainforge", "trainforge.contract")
            and not m.startswith("trainforge.runtime")
        )
        print(json.dumps({
            "foreign": foreign,
            "sigterm_default": signal.getsignal(signal.SIGTERM) is signal.SIG_DFL,
            "snapshot_built": environment._current is not None,
        }))
    """)
    env = {**os.environ, "TRAINFORGE_ROOT": str(absent_root)}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    report = json.loads(out.stdout)
    assert report == {"foreign": [], "sigterm_default": True, "snapshot_built": False}
    assert not absent_root.exists()


# --- the environment snapshot ----------------------------------------------------------

def test_reads_what_the_contract_writes(tmp_path: Path):
    """The runtime and trainforge.contract agree: build the env and files the
    backends build, read them back."""
    layout = Layout(str(tmp_path / "ml"))
    for folder in layout.directories():
        os.makedirs(folder)
    inputs = [InputChannel(channel="train", uri="s3://data/train/"),
              InputChannel(channel="val-set", uri="s3://data/val/")]
    host = HostInfo(current_host="algo-2", hosts=("algo-1", "algo-2"))
    for item in inputs:
        os.makedirs(layout.channel_dir(item.channel))
    Path(layout.resource_config_file).write_text(json.dumps(contract.resource_config(host)))
    Path(layout.input_data_config_file).write_text(json.dumps(contract.input_data_config(inputs)))
    Path(layout.hyperparameters_file).write_text(json.dumps({"lr": "0.1"}))
    env_vars = contract.contract_env(
        job_name="mnist-001", layout=layout, hyperparameters={"lr": "0.1"}, inputs=inputs, host=host,
        instance=lookup("gpu-2x"), attempt=3,
    )

    env = runtime.TrainingEnvironment.from_env(env_vars)

    assert env.root == Path(layout.root)
    assert env.layout == layout
    assert env.job_name == "mnist-001"
    assert (env.current_host, env.hosts, env.rank, env.is_master) == ("algo-2", ("algo-1", "algo-2"), 1, False)
    assert (env.num_gpus, env.num_cpus, env.attempt) == (2, 24, 3)
    assert dict(env.channels) == {"train": Path(layout.channel_dir("train")),
                                  "val-set": Path(layout.channel_dir("val-set"))}
    assert env.model_dir == Path(layout.model_dir)
    assert env.output_data_dir == Path(layout.output_data_dir)
    assert env.checkpoint_dir == Path(layout.checkpoint_dir)
    assert env.metrics_file == Path(layout.metrics_file)
    assert env.failure_file == Path(layout.failure_file)
    assert env.hyperparameters.float("lr") == 0.1


def test_snapshot_is_frozen_cached_and_refreshable(root: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TRAINFORGE_JOB_NAME", "first")
    env = runtime.current()
    assert env.job_name == "first"
    with pytest.raises(dataclasses.FrozenInstanceError):
        env.job_name = "changed"  # type: ignore[misc]
    with pytest.raises(TypeError):
        env.channels["x"] = Path("/")  # type: ignore[index]
    monkeypatch.setenv("TRAINFORGE_JOB_NAME", "second")
    assert runtime.current() is env
    assert runtime.current(refresh=True).job_name == "second"


def test_defaults_without_any_contract(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("TRAINFORGE_ROOT", str(tmp_path / "absent"))
    env = runtime.current()
    assert (env.current_host, env.hosts, env.attempt, env.num_gpus) == ("algo-1", ("algo-1",), 1, 0)
    assert env.num_cpus >= 1
    assert dict(env.channels) == {}
    assert len(env.hyperparameters) == 0
    assert env.root == tmp_path / "absent"


def test_default_root_is_opt_ml():
    assert runtime.TrainingEnvironment.from_env({}).root == Path("/opt/ml")


def test_sagemaker_variables_win_over_the_layout(root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "train").mkdir(parents=True)
    monkeypatch.setenv("SM_MODEL_DIR", str(elsewhere / "model"))
    monkeypatch.setenv("SM_CHANNEL_TRAIN", str(elsewhere / "train"))
    monkeypatch.setenv("SM_HOSTS", json.dumps(["algo-1", "algo-2", "algo-3"]))
    monkeypatch.setenv("SM_CURRENT_HOST", "algo-3")
    env = runtime.current()
    assert env.model_dir == elsewhere / "model"
    assert runtime.channel_path("train") == elsewhere / "train"
    assert (env.current_host, env.rank) == ("algo-3", 2)
    assert runtime.model_dir() == elsewhere / "model" and (elsewhere / "model").is_dir()


@pytest.mark.parametrize("text", ["{not json", json.dumps({"hosts": ["algo-1"]}), "[]"])
def test_malformed_resource_config_names_the_file(root: Path, text: str):
    (root / "input" / "config" / "resourceconfig.json").write_text(text)
    with pytest.raises(runtime.RuntimeContractError, match="resourceconfig.json"):
        runtime.current()


def test_malformed_integer_variable_names_it(root: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SM_NUM_GPUS", "two")
    with pytest.raises(runtime.RuntimeContractError, match="SM_NUM_GPUS='two'"):
        runtime.current()


# --- channels and output folders ----------------------------------------------------------

def test_channel_path_and_its_errors(root: Path):
    (root / "input" / "data" / "train").mkdir()
    (root / "input" / "data" / "validation").mkdir()
    assert runtime.channel_path("train") == root / "input" / "data" / "train"
    with pytest.raises(runtime.ChannelNotFoundError) as caught:
        runtime.channel_path("test")
    message = str(caught.value)
    assert "'test'" in message and "'train'" in message and "'validation'" in message
    assert isinstance(caught.value, LookupError)
    assert caught.value.available == ("train", "validation")


def test_declared_channel_without_its_directory(root: Path):
    (root / "input" / "config" / "inputdataconfig.json").write_text(json.dumps({"train": {}}))
    with pytest.raises(runtime.ChannelNotFoundError, match=r"'train' has no directory at .*input/data/train"):
        runtime.channel_path("train")


def test_output_folders_are_created(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TRAINFORGE_ROOT", str(tmp_path / "ml"))
    assert runtime.model_dir() == tmp_path / "ml" / "model"
    assert runtime.output_data_dir() == tmp_path / "ml" / "output" / "data"
    assert runtime.checkpoint_dir() == tmp_path / "ml" / "checkpoints"
    for name in ("model", "output/data", "checkpoints"):
        assert (tmp_path / "ml" / name).is_dir()


# --- hyperparameters ----------------------------------------------------------------

def test_hyperparameters_typed(root: Path):
    write_hps(root, {"lr": "0.01", "epochs": "10", "amp": "True", "optimizer": "adam", "layers": "[64, 32]",
                     "extra": "kept", "n": 5, "flag": True, "rate": 0.5})
    hp = runtime.hyperparameters()
    assert hp.float("lr") == 0.01
    assert hp.int("epochs") == 10
    assert hp.bool("amp") is True
    assert hp.str("optimizer") == "adam"
    assert hp.json("layers") == [64, 32]
    # JSON numbers and booleans arrive as their wire strings
    assert (hp.int("n"), hp.bool("flag"), hp.float("rate")) == (5, True, 0.5)
    assert hp["n"] == "5" and hp["flag"] == "true"
    assert hp.names() == ["lr", "epochs", "amp", "optimizer", "layers", "extra", "n", "flag", "rate"]
    # absent: the default, as given
    assert hp.float("momentum", 0.9) == 0.9
    assert hp.int("missing", None) is None


@pytest.mark.parametrize("text,expected", [
    ("true", True), ("TRUE", True), ("Yes", True), ("1", True), (" yes ", True),
    ("false", False), ("False", False), ("NO", False), ("0", False),
])
def test_bool_spellings(text: str, expected: bool):
    assert runtime.Hyperparameters({"b": text}).bool("b") is expected


@pytest.mark.parametrize("getter,text,expected_type", [
    ("int", "1.5", "an integer"),
    ("int", "1e3", "an integer"),
    ("int", "", "an integer"),
    ("int", "ten", "an integer"),
    ("float", "fast", "a finite number"),
    ("float", "nan", "a finite number"),
    ("bool", "maybe", "a boolean"),
    ("bool", "2", "a boolean"),
    ("json", "[1,", "JSON"),
])
def test_wrong_types_name_hyperparameter_value_and_type(getter: str, text: str, expected_type: str):
    hp = runtime.Hyperparameters({"x": text}, source="/opt/ml/input/config/hyperparameters.json")
    with pytest.raises(runtime.HyperparameterError) as caught:
        getattr(hp, getter)("x")
    message = str(caught.value)
    assert "'x'" in message and repr(text) in message and expected_type in message
    assert "hyperparameters.json" in message
    assert isinstance(caught.value, ValueError)
    assert (caught.value.name, caught.value.value) == ("x", text)


def test_int_accepts_signs_and_spaces():
    hp = runtime.Hyperparameters({"a": "-3", "b": " +7 "})
    assert (hp.int("a"), hp.int("b")) == (-3, 7)


def test_required_hyperparameter_missing_lists_what_was_given():
    hp = runtime.Hyperparameters({"epochs": "3", "batch_size": "8"}, source="SM_HPS")
    with pytest.raises(runtime.HyperparameterError, match=r"'lr' is required .*SM_HPS.*batch_size, epochs"):
        hp.float("lr")


def test_hyperparameters_fall_back_to_sm_hps(root: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SM_HPS", json.dumps({"lr": "0.3"}))
    assert runtime.hyperparameters().float("lr") == 0.3
    assert runtime.hyperparameters().source == "SM_HPS"
    write_hps(root, {"lr": "0.4"})  # the file wins when present
    assert runtime.current(refresh=True).hyperparameters.float("lr") == 0.4


def test_hyperparameters_file_must_be_an_object(root: Path):
    write_hps(root, ["lr", "0.1"])  # type: ignore[arg-type]
    with pytest.raises(runtime.RuntimeContractError, match="hyperparameters.json: expected a JSON object"):
        runtime.hyperparameters()


# --- metrics --------------------------------------------------------------------------

def test_log_metric_appends_json_lines(root: Path):
    before = time.time()
    runtime.log_metric("train:loss", 0.5, step=1)
    runtime.log_metric("validation:accuracy", 0.97)
    lines = (root / "output" / "metrics.jsonl").read_text().splitlines()
    first, second = (json.loads(line) for line in lines)
    assert first["name"] == "train:loss" and first["value"] == 0.5 and first["step"] == 1
    assert before <= first["timestamp"] <= time.time()
    assert second["step"] is None and second["value"] == 0.97


def test_log_metric_non_finite_values_are_kept_as_null_and_read_back(root: Path):
    runtime.log_metric("loss", float("nan"), step=7)
    runtime.log_metric("loss", float("-inf"), step=8)
    text = (root / "output" / "metrics.jsonl").read_text()
    assert "NaN" not in text and "Infinity" not in text  # strict JSON for every reader
    assert json.loads(text.splitlines()[0])["value"] is None
    records = read_records(root / "output" / "metrics.jsonl")
    assert math.isnan(records[0].value) and records[0].step == 7
    assert records[1].value == -math.inf


def test_log_metric_honours_trainforge_metrics_file(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    target = tmp_path / "custom" / "m.jsonl"
    target.parent.mkdir()
    monkeypatch.setenv("TRAINFORGE_METRICS_FILE", str(target))
    runtime.log_metric("a", 1)
    assert [r.name for r in read_records(target)] == ["a"]
    assert not (root / "output" / "metrics.jsonl").exists()


def test_log_metric_is_thread_safe(root: Path):
    def work(worker: int) -> None:
        for i in range(200):
            runtime.log_metric(f"worker{worker}", i, step=i)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    records = read_records(root / "output" / "metrics.jsonl")
    assert len(records) == 1200
    for worker in range(6):
        assert [r.step for r in records if r.name == f"worker{worker}"] == list(range(200))


def test_log_metric_without_a_contract_tree_prints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    monkeypatch.setenv("TRAINFORGE_ROOT", str(tmp_path / "absent"))
    runtime.log_metric("loss", 0.25, step=3)
    assert capsys.readouterr().out == "metric loss=0.25 step=3\n"
    assert not (tmp_path / "absent").exists()


@pytest.mark.parametrize("name,value,step,error", [
    ("", 1.0, None, ValueError),
    ("has space", 1.0, None, ValueError),
    ("loss", "0.5", None, TypeError),
    ("loss", None, None, TypeError),
    ("loss", 1.0, 1.5, TypeError),
])
def test_log_metric_rejects_bad_arguments(root: Path, name, value, step, error):
    with pytest.raises(error):
        runtime.log_metric(name, value, step=step)
    assert not (root / "output" / "metrics.jsonl").exists()


# --- failure file ----------------------------------------------------------------------

def test_write_failure_keeps_the_first_1024_characters(root: Path):
    path = runtime.write_failure("x" * 1000 + "y" * 100)
    assert path == root / "output" / "failure"
    text = path.read_text()
    assert len(text) == 1024 and text.endswith("y" * 24)


def test_write_failure_describes_an_exception(root: Path):
    def inner() -> None:
        raise KeyError("weights")

    try:
        inner()
    except KeyError as exc:
        runtime.write_failure(exc)
    text = (root / "output" / "failure").read_text()
    lines = text.splitlines()
    assert lines[0] == "KeyError: 'weights'"
    assert "in inner" in lines[1]  # innermost frame first


def test_write_failure_without_a_contract_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    monkeypatch.setenv("TRAINFORGE_ROOT", str(tmp_path / "absent"))
    assert runtime.write_failure("boom") is None
    assert "boom" in capsys.readouterr().err
    assert not (tmp_path / "absent").exists()


# --- checkpoints ---------------------------------------------------------------------------

def test_atomic_write_replaces_whole_files_only(tmp_path: Path):
    target = tmp_path / "ckpt" / "state.bin"
    with runtime.atomic_write(target) as f:
        f.write(b"one")
    assert target.read_bytes() == b"one"
    with pytest.raises(RuntimeError):
        with runtime.atomic_write(target) as f:
            f.write(b"half-written")
            raise RuntimeError("killed mid-save")
    assert target.read_bytes() == b"one"
    assert sorted(p.name for p in target.parent.iterdir()) == ["state.bin"]
    with runtime.atomic_write(target, "w") as f:
        f.write("text")
    assert target.read_text() == "text"


def test_latest_checkpoint_orders_by_number_then_time(root: Path):
    folder = root / "checkpoints"
    assert runtime.latest_checkpoint() is None
    for name in ("epoch-9.pt", "epoch-10.pt", "epoch-2.pt"):
        (folder / name).write_bytes(b"x")
    (folder / ".epoch-11.pt.123.tmp").write_bytes(b"partial")
    (folder / ".epoch-12.pt").write_bytes(b"hidden")
    (folder / "notes.txt").write_text("not a checkpoint")
    assert runtime.latest_checkpoint() == folder / "epoch-10.pt"
    assert [p.name for p in runtime.list_checkpoints()] == ["epoch-2.pt", "epoch-9.pt", "epoch-10.pt"]
    old, new = folder / "a.ckpt", folder / "b.ckpt"
    new.write_bytes(b"")
    old.write_bytes(b"")
    os.utime(new, (time.time() + 10, time.time() + 10))
    assert runtime.latest_checkpoint("*.ckpt") == new


def test_prune_checkpoints_keeps_the_newest(tmp_path: Path):
    for epoch in range(1, 6):
        (tmp_path / f"epoch-{epoch:04d}.pt").write_bytes(b"x")
    removed = runtime.prune_checkpoints(2, directory=tmp_path)
    assert [p.name for p in removed] == ["epoch-0001.pt", "epoch-0002.pt", "epoch-0003.pt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-0004.pt", "epoch-0005.pt"]
    with pytest.raises(ValueError):
        runtime.prune_checkpoints(0, directory=tmp_path)


# --- stop signals ------------------------------------------------------------------------

def _wait_until(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def test_sigterm_sets_the_flag_and_calls_back():
    seen: list[int] = []
    runtime.on_stop(seen.append)
    assert runtime.stop_requested() is False and runtime.stop_signal() is None
    os.kill(os.getpid(), signal.SIGTERM)
    assert _wait_until(runtime.stop_requested)
    assert seen == [signal.SIGTERM]
    assert runtime.stop_signal() is signal.SIGTERM


def test_wait_for_stop_wakes_early():
    runtime.handle_stop_signals()
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    started = time.monotonic()
    try:
        assert runtime.wait_for_stop(30) is True
    finally:
        timer.cancel()
    assert time.monotonic() - started < 5
    assert runtime.wait_for_stop(0) is True


def test_wait_for_stop_times_out():
    started = time.monotonic()
    assert runtime.wait_for_stop(0.1) is False
    assert 0.1 <= time.monotonic() - started < 2


def test_reset_restores_the_previous_handler():
    runtime.handle_stop_signals()
    assert signal.getsignal(signal.SIGTERM) is signals._handle
    signals._reset()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_first_sigterm_is_survived_second_one_ends_the_process():
    probe = textwrap.dedent("""
        import os, signal, sys, time
        from trainforge import runtime
        runtime.handle_stop_signals()
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + 5
        while not runtime.stop_requested() and time.monotonic() < deadline:
            time.sleep(0.01)
        print("stop requested:", runtime.stop_requested(), flush=True)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        print("still alive", flush=True)
    """)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30)
    assert out.stdout == "stop requested: True\n"
    assert out.returncode == -signal.SIGTERM


def test_run_trainer_turns_how_train_ended_into_exit_code_and_failure_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TRAINFORGE_ROOT", str(tmp_path))
    failure = tmp_path / "output" / "failure"

    def stopped() -> None:
        raise runtime.Stopped("stopped by SIGTERM after epoch 2 of 5")

    def broken() -> None:
        raise ValueError("bad row 7")

    assert runtime.run_trainer(lambda: None) == 0
    assert not failure.exists() and "finished in" in capsys.readouterr().out
    assert runtime.run_trainer(stopped) == runtime.STOPPED_EXIT_CODE == 143
    assert failure.read_text().startswith("stopped by SIGTERM after epoch 2 of 5")
    assert runtime.run_trainer(broken) == 1
    assert "ValueError: bad row 7" in failure.read_text()
    assert "Traceback" in capsys.readouterr().err


@pytest.mark.parametrize("name,value,step", [
    ("train:loss", 0.25, 3), ('odd"name\\é', 1e-300, None), ("flag", True, True), ("big", 10**20, 2**40),
])
def test_metric_lines_are_what_json_dumps_writes(name: str, value: object, step: object) -> None:
    """log_metric formats its line without json.dumps (speed): the same text, strict JSON."""
    from trainforge.runtime.metrics import metric_line

    line = metric_line(name, value, step, timestamp=1_700_000_000.125)
    record = {"timestamp": 1_700_000_000.125, "name": name, "value": float(value),  # type: ignore[arg-type]
              "step": None if step is None else int(step)}  # type: ignore[call-overload]
    assert line == json.dumps(record, allow_nan=False) and json.loads(line) == record
