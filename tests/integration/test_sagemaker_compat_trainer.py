"""The sagemaker-compat example: a trainer that knows only SageMaker's contract
runs against a relocated contract tree through the SM_* variables alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from trainforge import contract
from trainforge.contract import HostInfo, Layout
from trainforge.instances import lookup
from trainforge.spec.models import InputChannel

EXAMPLE = Path(__file__).resolve().parents[2] / "containers" / "examples" / "sagemaker-compat"


def run_trainer(tmp_path: Path, hyperparameters: dict[str, str], csv_files: dict[str, str]) -> tuple[Layout, subprocess.CompletedProcess[str]]:
    layout = Layout(str(tmp_path / "ml"))
    for folder in layout.directories():
        os.makedirs(folder, exist_ok=True)
    inputs = [InputChannel(channel="train", uri="s3://data/train/")]
    os.makedirs(layout.channel_dir("train"))
    for name, text in csv_files.items():
        path = Path(layout.channel_dir("train")) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    host = HostInfo(current_host="algo-1", hosts=("algo-1",))
    Path(layout.hyperparameters_file).write_text(json.dumps(hyperparameters))
    Path(layout.resource_config_file).write_text(json.dumps(contract.resource_config(host)))
    Path(layout.input_data_config_file).write_text(json.dumps(contract.input_data_config(inputs)))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("SM_", "TRAINFORGE_"))},
           **contract.contract_env(job_name="compat", layout=layout, hyperparameters=hyperparameters,
                                   inputs=inputs, host=host, instance=lookup("local"))}
    # -S: no site-packages, so the trainer cannot lean on trainforge or anything else installed
    result = subprocess.run([sys.executable, "-S", "-m", "trainer.start", "train"], cwd=EXAMPLE, env=env,
                            capture_output=True, text=True, timeout=60)
    return layout, result


def test_trains_from_the_relocated_tree(tmp_path: Path):
    layout, result = run_trainer(tmp_path, {"min_rows": "3"},
                                 {"a.csv": "x,y\n1,2\n3,4\n", "more/b.csv": "x,y\n5,9\n"})
    assert result.returncode == 0, result.stderr
    assert "rows=3 mean=5.000000" in result.stdout
    assert "host algo-1 of ['algo-1']; channels ['train']" in result.stdout
    model = json.loads((Path(layout.model_dir) / "model.json").read_text())
    assert model == {"type": "mean", "target_column": -1, "mean": 5.0, "rows": 3}
    summary = json.loads((Path(layout.output_data_dir) / "summary.json").read_text())
    assert summary == {"files": ["a.csv", "more/b.csv"], "rows": 3}
    assert not Path(layout.failure_file).exists()


def test_failure_file_and_exit_code(tmp_path: Path):
    layout, result = run_trainer(tmp_path, {"min_rows": "10"}, {"a.csv": "x,y\n1,2\n"})
    assert result.returncode == 1
    reason = Path(layout.failure_file).read_text()
    assert reason.startswith("ValueError: found 1 rows in 1 CSV files")
    assert len(reason) <= 1024
    assert not (Path(layout.model_dir) / "model.json").exists()
