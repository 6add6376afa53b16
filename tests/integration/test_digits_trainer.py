"""The digits-pytorch example trainer, run for real (PyTorch on the CPU) as a
subprocess against a contract tree laid out as the process backend lays it out."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from trainforge import contract
from trainforge.contract import HostInfo, Layout
from trainforge.examples import write_digits_dataset
from trainforge.instances import lookup
from trainforge.metrics import MetricParser, read_records
from trainforge.spec.loading import parse_job
from trainforge.spec.models import InputChannel

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[2] / "containers" / "examples" / "digits-pytorch"
EPOCH_LINE = re.compile(r"^epoch=(\d+) train_loss=\d+\.\d{4} val_acc=(\d\.\d{4})$", re.MULTILINE)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_digits_dataset(tmp_path_factory.mktemp("digits"))


@dataclass
class Run:
    layout: Layout
    env: dict[str, str]

    @property
    def root(self) -> Path:
        return Path(self.layout.root)

    def start(self, **popen: object) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "trainer.start"], cwd=EXAMPLE, env=self.env,
                                text=True, **popen)  # type: ignore[call-overload]

    def run(self, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "trainer.start"], cwd=EXAMPLE, env=self.env,
                              text=True, capture_output=True, timeout=timeout)

    def epochs(self, stdout: str) -> list[tuple[int, float]]:
        return [(int(e), float(a)) for e, a in EPOCH_LINE.findall(stdout)]

    def checkpoints(self) -> list[str]:
        return sorted(p.name for p in Path(self.layout.checkpoint_dir).iterdir())


def prepare(tmp_path: Path, dataset: dict[str, Path], hyperparameters: dict[str, str], attempt: int = 1) -> Run:
    """The /opt/ml tree and environment of one attempt, built with trainforge.contract."""
    layout = Layout(str(tmp_path / "ml"))
    for folder in layout.directories():
        os.makedirs(folder, exist_ok=True)
    inputs = [InputChannel(channel=c, uri=f"file://{p}") for c, p in dataset.items()]
    for item in inputs:
        if not os.path.isdir(layout.channel_dir(item.channel)):
            shutil.copytree(dataset[item.channel], layout.channel_dir(item.channel))
    host = HostInfo(current_host="algo-1", hosts=("algo-1",))
    Path(layout.hyperparameters_file).write_text(json.dumps(hyperparameters))
    Path(layout.resource_config_file).write_text(json.dumps(contract.resource_config(host)))
    Path(layout.input_data_config_file).write_text(json.dumps(contract.input_data_config(inputs)))
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "TRAINFORGE_"))}
    env = {**base, **contract.contract_env(
        job_name="digits-test", layout=layout, hyperparameters=hyperparameters, inputs=inputs,
        host=host, instance=lookup("local"), attempt=attempt,
    )}
    return Run(layout, env)


def test_trains_to_90_percent_with_the_defaults(tmp_path: Path, dataset: dict[str, Path]):
    run = prepare(tmp_path, dataset, {})
    started = time.monotonic()
    result = run.run()
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    print(f"digits trainer: {elapsed:.1f}s wall, last line: {result.stdout.strip().splitlines()[-2]}")

    epochs = run.epochs(result.stdout)
    assert [e for e, _ in epochs] == list(range(1, 16))
    assert "resumed from checkpoint" not in result.stdout

    # the job's own regexes see what the trainer prints
    job = parse_job(json.loads((EXAMPLE / "job.json").read_text()))
    parser = MetricParser(job.spec.metrics)
    parsed = [r for line in result.stdout.splitlines() for r in parser.feed(line, 0.0)]
    accuracy = [r for r in parsed if r.name == "validation:accuracy"]
    assert [r.step for r in accuracy] == list(range(1, 16))
    assert len([r for r in parsed if r.name == "train:loss"]) == 15

    model = json.loads((run.root / "model" / "model.json").read_text())
    assert model["metrics"]["validation:accuracy"] >= 0.9
    assert model["architecture"]["classes"] == 10

    records = read_records(run.layout.metrics_file)
    logged = {name: [(r.step, r.value) for r in records if r.name == name]
              for name in ("train:loss", "validation:accuracy")}
    assert [s for s, _ in logged["validation:accuracy"]] == list(range(1, 16))
    assert [round(v, 4) for _, v in logged["validation:accuracy"]] == [a for _, a in epochs]
    assert logged["train:loss"][-1][1] < logged["train:loss"][0][1]

    import torch

    state = torch.load(run.root / "model" / "model.pt", weights_only=True)
    assert state["0.weight"].shape == (128, 64) and state["2.weight"].shape == (10, 128)
    rows = (run.root / "output" / "data" / "confusion_matrix.csv").read_text().splitlines()
    counts = [[int(n) for n in row.split(",")[1:]] for row in rows[1:]]
    assert len(counts) == 10 and sum(map(sum, counts)) == 360
    assert sum(counts[i][i] for i in range(10)) / 360 == pytest.approx(model["metrics"]["validation:accuracy"], abs=1e-6)
    assert run.checkpoints() == ["epoch-0014.pt", "epoch-0015.pt"]
    assert not Path(run.layout.failure_file).exists()


def test_a_crash_leaves_checkpoints_and_the_retry_resumes(tmp_path: Path, dataset: dict[str, Path]):
    hps = {"epochs": "6", "fail_at_epoch": "4"}
    first = prepare(tmp_path, dataset, hps, attempt=1)
    crashed = first.run()
    assert crashed.returncode == 1
    assert [e for e, _ in first.epochs(crashed.stdout)] == [1, 2, 3]
    reason = Path(first.layout.failure_file).read_text()
    assert reason.startswith("RuntimeError: simulated failure at epoch 4")
    assert "start.py" in reason and len(reason) <= 1024
    assert first.checkpoints() == ["epoch-0002.pt", "epoch-0003.pt"]
    assert not (first.root / "model" / "model.pt").exists()

    os.remove(first.layout.failure_file)  # the backend clears the output between attempts
    retry = prepare(tmp_path, dataset, hps, attempt=2)  # same tree, as after a checkpoint restore
    resumed = retry.run()
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from checkpoint epoch=3" in resumed.stdout
    assert [e for e, _ in retry.epochs(resumed.stdout)] == [4, 5, 6]
    assert (retry.root / "model" / "model.pt").exists()
    steps = [r.step for r in read_records(retry.layout.metrics_file) if r.name == "validation:accuracy"]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert not Path(retry.layout.failure_file).exists()


def _lines(stream, sink: queue.Queue[str]) -> None:
    for line in stream:
        sink.put(line)
    sink.put("")


def test_sigterm_checkpoints_the_epoch_and_exits_143(tmp_path: Path, dataset: dict[str, Path]):
    run = prepare(tmp_path, dataset, {"epochs": "50", "sleep_per_epoch": "0.5"})
    process = run.start(stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_lines, args=(process.stdout, lines), daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + 120
    try:
        while not any(line.startswith("epoch=2 ") for line in seen):
            assert time.monotonic() < deadline, "no second epoch within 120 s:\n" + "".join(seen)
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line, "the trainer ended early:\n" + "".join(seen)
            seen.append(line)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 143
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    while (line := lines.get(timeout=10)) != "":
        seen.append(line)
    output = "".join(seen)
    last_epoch = max(int(e) for e, _ in EPOCH_LINE.findall(output))
    assert 2 <= last_epoch < 50
    reason = Path(run.layout.failure_file).read_text()
    assert reason.startswith(f"stopped by SIGTERM after epoch {last_epoch} of 50")
    assert run.checkpoints()[-1] == f"epoch-{last_epoch:04d}.pt"
    assert not (run.root / "model" / "model.pt").exists()


def test_a_bad_hyperparameter_fails_with_a_reason_naming_it(tmp_path: Path, dataset: dict[str, Path]):
    run = prepare(tmp_path, dataset, {"epochs": "ten"})
    result = run.run()
    assert result.returncode == 1
    reason = Path(run.layout.failure_file).read_text()
    assert reason.startswith("HyperparameterError: hyperparameter 'epochs' = 'ten' is not an integer")
