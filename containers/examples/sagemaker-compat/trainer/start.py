"""A trainer written only against SageMaker's bring-your-own-container contract.

It imports nothing but the standard library (no trainforge), to show that an
existing SageMaker training image runs unchanged. The "model" is the mean of a
target column over every CSV file in the ``train`` channel.

Contract used (each path honours its SM_* variable when set, so the same code
runs where the /opt/ml tree is relocated, as in trainforge's process backend):

    /opt/ml/input/config/hyperparameters.json     SM_INPUT_CONFIG_DIR
    /opt/ml/input/config/resourceconfig.json      SM_INPUT_CONFIG_DIR
    /opt/ml/input/config/inputdataconfig.json     SM_INPUT_CONFIG_DIR
    /opt/ml/input/data/<channel>/                 SM_CHANNEL_<CHANNEL>
    /opt/ml/model/                                SM_MODEL_DIR
    /opt/ml/output/data/                          SM_OUTPUT_DATA_DIR
    /opt/ml/output/failure                        SM_OUTPUT_DIR
    exit code 0 = success, anything else = failure

Hyperparameters (strings, as SageMaker passes them):
    target_column   index of the column to average (default -1, the last)
    skip_header     "true"/"false": whether each file starts with a header row (default true)
    min_rows        fail when fewer rows than this are found (default 1)
"""

from __future__ import annotations

import csv
import json
import os
import sys
import traceback
from typing import Any

PREFIX = "/opt/ml"


def _dir(variable: str, *default: str) -> str:
    return os.environ.get(variable) or os.path.join(PREFIX, *default)


INPUT_CONFIG_DIR = _dir("SM_INPUT_CONFIG_DIR", "input", "config")
INPUT_DATA_DIR = os.path.join(_dir("SM_INPUT_DIR", "input"), "data")
MODEL_DIR = _dir("SM_MODEL_DIR", "model")
OUTPUT_DIR = _dir("SM_OUTPUT_DIR", "output")
OUTPUT_DATA_DIR = os.environ.get("SM_OUTPUT_DATA_DIR") or os.path.join(OUTPUT_DIR, "data")


def read_config(name: str, default: Any) -> Any:
    path = os.path.join(INPUT_CONFIG_DIR, name)
    if not os.path.exists(path):
        return default
    with open(path) as f:
        return json.load(f)


def channel_dir(channel: str) -> str:
    variable = "SM_CHANNEL_" + channel.upper().replace("-", "_").replace(".", "_")
    return os.environ.get(variable) or os.path.join(INPUT_DATA_DIR, channel)


def write_failure(message: str) -> None:
    os.makedirs(OUTPUT_DIR, exist_ok=True)
    with open(os.path.join(OUTPUT_DIR, "failure"), "w") as f:
        f.write(message[:1024])


def train() -> None:
    hyperparameters = read_config("hyperparameters.json", {})
    resources = read_config("resourceconfig.json", {"current_host": "algo-1", "hosts": ["algo-1"]})
    data_config = read_config("inputdataconfig.json", {})
    print(f"host {resources['current_host']} of {resources['hosts']}; channels {sorted(data_config)}", flush=True)

    target_column = int(hyperparameters.get("target_column", "-1"))
    skip_header = str(hyperparameters.get("skip_header", "true")).lower() in ("true", "1", "yes")
    min_rows = int(hyperparameters.get("min_rows", "1"))

    train_dir = channel_dir("train")
    if not os.path.isdir(train_dir):
        raise FileNotFoundError(f"channel 'train' is missing: {train_dir} does not exist")
    files = sorted(os.path.join(root, name) for root, _, names in os.walk(train_dir)
                   for name in names if name.endswith(".csv"))
    count, total = 0, 0.0
    for path in files:
        with open(path, newline="") as f:
            reader = csv.reader(f)
            if skip_header:
                next(reader, None)
            for row in reader:
                if row:
                    total += float(row[target_column])
                    count += 1
    if count < min_rows:
        raise ValueError(f"found {count} rows in {len(files)} CSV files under {train_dir}, need at least {min_rows}")
    mean = total / count
    print(f"rows={count} mean={mean:.6f}", flush=True)

    os.makedirs(MODEL_DIR, exist_ok=True)
    with open(os.path.join(MODEL_DIR, "model.json"), "w") as f:
        json.dump({"type": "mean", "target_column": target_column, "mean": mean, "rows": count}, f)
    os.makedirs(OUTPUT_DATA_DIR, exist_ok=True)
    with open(os.path.join(OUTPUT_DATA_DIR, "summary.json"), "w") as f:
        json.dump({"files": [os.path.relpath(p, train_dir) for p in files], "rows": count}, f)


def main() -> int:
    # SageMaker runs the image as `<entrypoint> train`; the argument is accepted and ignored.
    try:
        train()
    except Exception as exc:
        trace = traceback.format_exc()
        print(trace, file=sys.stderr, flush=True)
        write_failure(f"{type(exc).__name__}: {exc}\n{trace}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
