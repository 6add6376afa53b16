"""``python -m trainforge.stage`` — what the cluster's stager containers run —
against the real MinIO, as a process with only its environment, as in a pod:
stage in (FullyReplicated and ShardedByS3Key across two hosts, config files,
checkpoint restore), checkpoint sync, stage out (model.tar.gz, output.tar.gz,
metrics) and the errors a pod would report."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

from tests.infra.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
KEYS = [f"part-{i:02d}.csv" for i in range(7)]


def job_json(bucket: Any, name: str = "stage-001", count: int = 2, **spec: Any) -> str:
    body = {
        "image": "example/trainer:1",
        "instance": {"type": "cpu-small", "count": count},
        "hyperparameters": {"lr": "0.01", "epochs": "2"},
        "inputs": [
            {"channel": "train", "uri": bucket.uri("data/train/"), "distribution": "ShardedByS3Key"},
            {"channel": "vocab", "uri": bucket.uri("data/vocab/"), "distribution": "FullyReplicated"},
        ],
        "output": {"uri": bucket.uri("models/")},
        "checkpoints": {"uri": bucket.uri(f"ckpt/{name}/")},
        **spec,
    }
    return json.dumps({"apiVersion": "trainforge.dev/v1alpha1", "kind": "TrainingJob",
                       "metadata": {"name": name, "namespace": "team-a"}, "spec": body})


def stager_env(bucket: Any, job: str, index: int | None = None, **extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env = {**keep, **bucket.env(), "TRAINFORGE_JOB": job, "PYTHONPATH": str(REPO / "sdk"),
           "PYTHONUNBUFFERED": "1", **extra}
    if index is not None:
        env["JOB_COMPLETION_INDEX"] = str(index)
    return env


def stage(command: str, root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "trainforge.stage", command, "--root", str(root), *args],
                          env=env, capture_output=True, text=True, timeout=120, check=False)


def put(bucket: Any, key: str, body: bytes) -> None:
    bucket.s3_client().put_object(Bucket=bucket.name, Key=key, Body=body)


def get(bucket: Any, key: str) -> bytes:
    return bucket.s3_client().get_object(Bucket=bucket.name, Key=key)["Body"].read()


def keys(bucket: Any, prefix: str) -> list[str]:
    listing = bucket.s3_client().list_objects_v2(Bucket=bucket.name, Prefix=prefix)
    return sorted(o["Key"] for o in listing.get("Contents", []))


def members(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def data(minio_bucket: Any) -> Any:
    for key in KEYS:
        put(minio_bucket, f"data/train/{key}", f"rows of {key}\n".encode())
    put(minio_bucket, "data/vocab/words.txt", b"alpha\nbeta\n")
    put(minio_bucket, "data/vocab/nested/more.txt", b"gamma\n")
    return minio_bucket


def test_stage_in_two_hosts_replicates_and_shards(data: Any, tmp_path: Path) -> None:
    put(data, "ckpt/stage-001/epoch-1.pt", b"weights-1")
    job = job_json(data)
    roots = {index: tmp_path / f"host-{index}" for index in (0, 1)}
    for index, root in roots.items():
        result = stage("in", root, stager_env(data, job, index))
        assert result.returncode == 0, result.stderr
        # where the time went, from inside the container: its start-up, the bytes and their rate
        assert re.search(rf"staged 2 channel\(s\) for algo-{index + 1} \(start-up [0-9.]+ s, 0\.0 MiB in "
                         r"[0-9.]+ s = [0-9]+ MiB/s\); restored 1 checkpoint file\(s\)", result.stdout), result.stdout

    shards = {}
    for index, root in roots.items():
        config = root / "input" / "config"
        resource = json.loads((config / "resourceconfig.json").read_text())
        assert resource["current_host"] == f"algo-{index + 1}"
        assert resource["hosts"] == ["algo-1", "algo-2"]
        assert json.loads((config / "hyperparameters.json").read_text()) == {"lr": "0.01", "epochs": "2"}
        channels = json.loads((config / "inputdataconfig.json").read_text())
        assert channels["train"]["S3DistributionType"] == "ShardedByS3Key"
        assert files(root / "input" / "data" / "vocab") == {
            "words.txt": b"alpha\nbeta\n", "nested/more.txt": b"gamma\n"}
        shards[index] = files(root / "input" / "data" / "train")
        assert (root / "checkpoints" / "epoch-1.pt").read_bytes() == b"weights-1"
        for folder in ("model", "output/data"):
            assert (root / folder).is_dir()

    assert shards[0] and shards[1] and not set(shards[0]) & set(shards[1])
    assert sorted(set(shards[0]) | set(shards[1])) == KEYS
    assert abs(len(shards[0]) - len(shards[1])) <= 1
    assert all(body == f"rows of {key}\n".encode() for s in shards.values() for key, body in s.items())


def test_stage_in_single_host_takes_every_key_and_defaults_to_index_0(data: Any, tmp_path: Path) -> None:
    result = stage("in", tmp_path, stager_env(data, job_json(data, count=1)))
    assert result.returncode == 0, result.stderr
    assert sorted(files(tmp_path / "input" / "data" / "train")) == KEYS
    assert not any((tmp_path / "checkpoints").iterdir())  # nothing to restore yet


def test_stage_in_missing_channel_fails_naming_it(minio_bucket: Any, tmp_path: Path) -> None:
    result = stage("in", tmp_path, stager_env(minio_bucket, job_json(minio_bucket), 0))
    assert result.returncode == 1
    assert "stager in:" in result.stderr and "'train'" in result.stderr
    assert "Traceback" not in result.stderr
    failure = (tmp_path / "output" / "failure").read_text()
    assert "'train'" in failure and len(failure) <= 1024


def test_stage_in_rejects_an_index_outside_the_job(data: Any, tmp_path: Path) -> None:
    result = stage("in", tmp_path, stager_env(data, job_json(data), 2))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "index 2" in result.stderr


def test_stage_in_refuses_a_job_that_is_not_valid(minio_bucket: Any, tmp_path: Path) -> None:
    result = stage("in", tmp_path, stager_env(minio_bucket, '{"kind": "TrainingJob"}', 0))
    assert result.returncode == 1
    assert result.stderr.startswith("stager in:") and "Traceback" not in result.stderr


def trained(root: Path, failure: str | None = None) -> None:
    """What a trainer leaves behind in /opt/ml."""
    (root / "model" / "sub").mkdir(parents=True)
    (root / "model" / "model.pt").write_bytes(b"final weights")
    (root / "model" / "sub" / "config.json").write_text("{}")
    (root / "output" / "data").mkdir(parents=True)
    (root / "output" / "data" / "predictions.csv").write_text("id,label\n1,7\n")
    (root / "output" / "metrics.jsonl").write_text('{"name": "val:acc", "value": 0.9, "step": 1}\n')
    (root / "checkpoints").mkdir()
    (root / "checkpoints" / "epoch-2.pt").write_bytes(b"weights-2")
    if failure is not None:
        (root / "output" / "failure").write_text(failure)


def test_stage_out_first_host_uploads_model_output_metrics_and_checkpoints(
    minio_bucket: Any, tmp_path: Path,
) -> None:
    job = job_json(minio_bucket)
    first, second = tmp_path / "host-0", tmp_path / "host-1"
    trained(first)
    second.mkdir()
    (second / "checkpoints").mkdir()
    (second / "checkpoints" / "rank-1.pt").write_bytes(b"rank 1")
    (second / "model").mkdir()
    (second / "model" / "ignored.pt").write_bytes(b"not the first host's")

    result = stage("out", first, stager_env(minio_bucket, job, 0))
    assert result.returncode == 0, result.stderr
    root = "models/team-a/stage-001/"
    assert f"staged out to s3://{minio_bucket.name}/{root}" in result.stdout
    assert members(get(minio_bucket, root + "output/model.tar.gz")) == {
        "model.pt": b"final weights", "sub/config.json": b"{}"}
    assert members(get(minio_bucket, root + "output/output.tar.gz")) == {
        "predictions.csv": b"id,label\n1,7\n"}
    assert b'"val:acc"' in get(minio_bucket, root + "metrics/metrics.jsonl")

    result = stage("out", second, stager_env(minio_bucket, job, 1))
    assert result.returncode == 0, result.stderr
    assert keys(minio_bucket, "ckpt/") == ["ckpt/stage-001/epoch-2.pt", "ckpt/stage-001/rank-1.pt"]
    assert members(get(minio_bucket, root + "output/model.tar.gz"))["model.pt"] == b"final weights"


def test_stage_out_after_a_failure_keeps_metrics_and_checkpoints_but_no_model(
    minio_bucket: Any, tmp_path: Path,
) -> None:
    trained(tmp_path, failure="CUDA out of memory")
    result = stage("out", tmp_path, stager_env(minio_bucket, job_json(minio_bucket, count=1)))
    assert result.returncode == 0, result.stderr
    assert keys(minio_bucket, "models/") == ["models/team-a/stage-001/metrics/metrics.jsonl"]
    assert keys(minio_bucket, "ckpt/") == ["ckpt/stage-001/epoch-2.pt"]


def test_stage_out_ignores_an_empty_failure_file(minio_bucket: Any, tmp_path: Path) -> None:
    # On Kubernetes the trainer's terminationMessagePath is the failure file: the
    # container runtime creates that mount point, an empty file, in the shared volume.
    trained(tmp_path, failure="")
    result = stage("out", tmp_path, stager_env(minio_bucket, job_json(minio_bucket, count=1)))
    assert result.returncode == 0, result.stderr
    assert "models/team-a/stage-001/output/model.tar.gz" in keys(minio_bucket, "models/")


def test_stage_out_output_uri_from_the_environment_wins(minio_bucket: Any, tmp_path: Path) -> None:
    trained(tmp_path)
    env = stager_env(minio_bucket, job_json(minio_bucket, count=1),
                     TRAINFORGE_OUTPUT_URI=minio_bucket.uri("elsewhere"))
    assert stage("out", tmp_path, env).returncode == 0
    assert "elsewhere/team-a/stage-001/output/model.tar.gz" in keys(minio_bucket, "elsewhere/")
    assert not keys(minio_bucket, "models/")


def test_sync_uploads_checkpoints_while_training_and_stages_out_on_sigterm(
    minio_bucket: Any, tmp_path: Path,
) -> None:
    job = job_json(minio_bucket, count=1)
    (tmp_path / "checkpoints").mkdir()
    sidecar = subprocess.Popen(
        [sys.executable, "-m", "trainforge.stage", "sync", "--root", str(tmp_path), "--interval", "0.2"],
        env=stager_env(minio_bucket, job, 0), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        (tmp_path / "checkpoints" / "epoch-1.pt").write_bytes(b"weights-1")
        wait_until(lambda: keys(minio_bucket, "ckpt/") == ["ckpt/stage-001/epoch-1.pt"], timeout=30,
                   what="the first checkpoint in MinIO")
        (tmp_path / "checkpoints" / "epoch-1.pt").write_bytes(b"weights-1 revised")
        wait_until(lambda: get(minio_bucket, "ckpt/stage-001/epoch-1.pt") == b"weights-1 revised",
                   timeout=30, what="the changed checkpoint in MinIO")
        # The metrics so far, while the trainer runs (a tuning job's early stopping reads them).
        record = json.dumps({"name": "val:acc", "value": 0.5, "step": 1, "timestamp": 1.0}) + "\n"
        (tmp_path / "output").mkdir(exist_ok=True)
        (tmp_path / "output" / "metrics.jsonl").write_text(record)
        wait_until(lambda: keys(minio_bucket, "models/") == ["models/team-a/stage-001/metrics/metrics.jsonl"],
                   timeout=30, what="the metrics file in MinIO before the trainer ends")
        assert get(minio_bucket, "models/team-a/stage-001/metrics/metrics.jsonl") == record.encode()
        assert sidecar.poll() is None  # a sidecar runs until the pod ends it
        (tmp_path / "model").mkdir()
        (tmp_path / "model" / "model.pt").write_bytes(b"final weights")
        sidecar.send_signal(signal.SIGTERM)
        stdout, stderr = sidecar.communicate(timeout=60)
    finally:
        if sidecar.poll() is None:
            sidecar.kill()
            sidecar.wait()
    assert sidecar.returncode == 0, stderr
    assert "staged out to" in stdout
    assert members(get(minio_bucket, "models/team-a/stage-001/output/model.tar.gz")) == {"model.pt": b"final weights"}


def test_sync_keeps_running_when_the_store_is_unreachable(minio_bucket: Any, tmp_path: Path) -> None:
    job = job_json(minio_bucket, count=1)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "epoch-1.pt").write_bytes(b"weights-1")
    env = {**stager_env(minio_bucket, job, 0), "AWS_ENDPOINT_URL": "http://127.0.0.1:1",
           "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:1", "AWS_MAX_ATTEMPTS": "1"}
    sidecar = subprocess.Popen(
        [sys.executable, "-m", "trainforge.stage", "sync", "--root", str(tmp_path), "--interval", "0.2"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time_limit = time.monotonic() + 60
        lines: list[str] = []
        assert sidecar.stdout is not None
        while time.monotonic() < time_limit and not any("will retry" in line for line in lines):
            lines.append(sidecar.stdout.readline())
        assert any("checkpoint sync failed (will retry)" in line for line in lines), lines
        assert sidecar.poll() is None
        sidecar.send_signal(signal.SIGTERM)
        _, stderr = sidecar.communicate(timeout=120)
    finally:
        if sidecar.poll() is None:
            sidecar.kill()
            sidecar.wait()
    assert sidecar.returncode == 1  # the final stage out could not reach the store either
    assert "stager sync:" in stderr and "Traceback" not in stderr


def test_sync_uploads_tensorboard_logs_while_training_and_at_the_end_never_through_links(
    minio_bucket: Any, tmp_path: Path,
) -> None:
    # $TRAINFORGE_TENSORBOARD_DIR on the cluster: the sidecar syncs it as the local supervisor does.
    job = job_json(minio_bucket, count=1)
    root, outside = tmp_path / "opt-ml", tmp_path / "node-secret.txt"
    board = root / "output" / "tensorboard"
    (board / "run1").mkdir(parents=True)
    outside.write_text("the node's secret")
    (board / "run1" / "planted").symlink_to(outside)  # the trainer is untrusted
    sidecar = subprocess.Popen(
        [sys.executable, "-m", "trainforge.stage", "sync", "--root", str(root), "--interval", "0.2"],
        env=stager_env(minio_bucket, job, 0), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    prefix = "models/team-a/stage-001/tensorboard/"
    try:
        (board / "run1" / "events.out.tfevents.1").write_bytes(b"epoch 1")
        wait_until(lambda: keys(minio_bucket, prefix) == [prefix + "run1/events.out.tfevents.1"], timeout=30,
                   what="the TensorBoard event file in MinIO while the trainer runs")
        (board / "run1" / "events.out.tfevents.1").write_bytes(b"epoch 1, epoch 2")
        (board / "run2").mkdir()
        (board / "run2" / "events.out.tfevents.2").write_bytes(b"last words")
        sidecar.send_signal(signal.SIGTERM)  # the pod ends: the final stage out syncs it once more
        _, stderr = sidecar.communicate(timeout=60)
    finally:
        if sidecar.poll() is None:
            sidecar.kill()
            sidecar.wait()
    assert sidecar.returncode == 0, stderr
    assert keys(minio_bucket, prefix) == [prefix + "run1/events.out.tfevents.1", prefix + "run2/events.out.tfevents.2"]
    assert get(minio_bucket, prefix + "run1/events.out.tfevents.1") == b"epoch 1, epoch 2"
    assert b"secret" not in b"".join(get(minio_bucket, k) for k in keys(minio_bucket, "models/"))


def test_the_sidecar_handles_sigterm_before_its_heavy_imports() -> None:
    """The sidecar is PID 1 in its container: a SIGTERM that comes before its
    handler exists is dropped, and a trainer that ends within the sidecar's
    start-up would leave the pod running for the whole grace period (seen with
    the SageMaker-compat example on the real node). So importing the stager
    loads neither pydantic nor boto3: ``main`` sets the handler, then imports."""
    probe = ("import sys, trainforge.stage; "
             "print(sorted(m for m in ('pydantic', 'boto3', 'botocore', 'trainforge.spec') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.stdout.strip() == "[]"
