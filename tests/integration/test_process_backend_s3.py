"""The process backend with S3 storage: data, checkpoints and artifacts on the
real MinIO server (fixture ``minio_bucket``), and endpoints that refuse us."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trainforge
from trainforge.errors import StorageUnreachable
from trainforge.examples import write_digits_dataset
from trainforge.spec import Phase
from trainforge.storage import open_store

from tests.integration.local_jobs import stop_leftovers

REPO = Path(__file__).resolve().parents[2]
DIGITS = REPO / "containers" / "examples" / "digits-pytorch"
FAULTS = REPO / "tests" / "trainers" / "faults"
REFUSED = "http://127.0.0.1:1"  # nothing listens on port 1
JOB_TIMEOUT = 180


def use_s3(monkeypatch: pytest.MonkeyPatch, home: Path, endpoint: str, access_key: str, secret_key: str,
           region: str = "us-east-1") -> None:
    """TRAINFORGE_HOME and the S3 endpoint and credentials, for this process and
    the supervisors and trainers it starts."""
    for variable in ("TRAINFORGE_BACKEND", "TRAINFORGE_CONFIG", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
                     "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("TRAINFORGE_HOME", str(home))
    monkeypatch.setenv("TRAINFORGE_S3_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", region)


@pytest.fixture
def bucket(minio_bucket: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A fresh bucket on MinIO, reachable through TRAINFORGE_S3_ENDPOINT_URL and AWS_*."""
    use_s3(monkeypatch, tmp_path / "home", minio_bucket.endpoint, minio_bucket.access_key,
           minio_bucket.secret_key, minio_bucket.region)
    yield minio_bucket
    stop_leftovers()


@pytest.fixture
def refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An S3 endpoint that refuses connections."""
    use_s3(monkeypatch, tmp_path / "home", REFUSED, "trainforge", "not-a-secret")
    yield REFUSED
    stop_leftovers()


def keys(bucket: Any, prefix: str = "") -> list[str]:
    response = bucket.s3_client().list_objects_v2(Bucket=bucket.name, Prefix=prefix)
    return sorted(o["Key"] for o in response.get("Contents", []))


def assert_no_model(job: trainforge.Job) -> None:
    status = job.status()
    assert status.artifacts.model is None and status.artifacts.output is None


# --- MinIO ------------------------------------------------------------------------------

@pytest.mark.slow
def test_digits_with_data_checkpoints_and_model_on_minio(bucket: Any, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    local = write_digits_dataset(tmp_path / "digits")
    for channel, folder in local.items():
        open_store(bucket.uri()).upload_dir(str(folder), bucket.uri(f"datasets/digits/{channel}/"))

    job = trainforge.submit_job(
        str(DIGITS), hparams={"epochs": 2},
        data={"train": bucket.uri("datasets/digits/train/"),
              "validation": bucket.uri("datasets/digits/validation/")},
        output=bucket.uri("models/"), checkpoints=bucket.uri("checkpoints/digits/"),
        metrics={"validation:accuracy": r"val_acc=([0-9.]+)"},
    )
    status = job.wait(timeout=JOB_TIMEOUT)

    assert status.phase is Phase.COMPLETED and status.attempts == 1
    assert status.final_metrics["validation:accuracy"] > 0.8
    assert job.model_uri == bucket.uri(f"models/default/{job.name}/output/model.tar.gz")
    assert keys(bucket, "models/") == sorted([
        f"models/default/{job.name}/output/model.tar.gz", f"models/default/{job.name}/output/output.tar.gz",
        f"models/default/{job.name}/metrics/metrics.jsonl", f"models/default/{job.name}/logs/algo-1-attempt-1.log"])
    assert keys(bucket, "checkpoints/") == ["checkpoints/digits/epoch-0001.pt", "checkpoints/digits/epoch-0002.pt"]
    assert status.artifacts.checkpoints == bucket.uri("checkpoints/digits/")

    # The handle downloads through its backend's store settings, not whatever the
    # environment says now (here: an endpoint that refuses connections).
    monkeypatch.setenv("TRAINFORGE_S3_ENDPOINT_URL", REFUSED)
    monkeypatch.setenv("AWS_ENDPOINT_URL", REFUSED)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", REFUSED)
    model = job.download_model(tmp_path / "model")
    assert json.loads((model / "model.json").read_text())["epochs"] == 2
    # nothing of the job's own went to the embedded store
    assert not (tmp_path / "home" / "store").exists()


def test_missing_s3_channel_fails_naming_channel_and_uri(bucket: Any) -> None:
    job = trainforge.submit_job(str(FAULTS), data={"train": bucket.uri("datasets/absent/")},
                                output=bucket.uri("models/"))
    status = job.wait(timeout=60, raise_on_failure=False)
    assert status.phase is Phase.FAILED and status.attempts == 0
    assert status.failure_reason == f"input channel 'train': no objects at {bucket.uri('datasets/absent/')}"
    assert_no_model(job)
    assert keys(bucket) == []


def test_missing_bucket_fails_naming_the_bucket(bucket: Any) -> None:
    job = trainforge.submit_job(str(FAULTS), data={"train": "s3://trainforge-no-such-bucket/data/"})
    status = job.wait(timeout=60, raise_on_failure=False)
    assert status.phase is Phase.FAILED
    assert status.failure_reason == (
        "input channel 'train': bucket 'trainforge-no-such-bucket' does not exist at "
        f"{bucket.endpoint} (s3://trainforge-no-such-bucket/data/)")


def test_rejected_credentials_fail_the_upload_with_a_hint(bucket: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    job = trainforge.submit_job(str(FAULTS), hparams={"action": "ok"}, output=bucket.uri("models/"))
    status = job.wait(timeout=60, raise_on_failure=False)
    assert status.phase is Phase.FAILED
    assert status.failure_reason is not None
    assert f"S3 endpoint {bucket.endpoint} rejected the credentials" in status.failure_reason
    assert "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY" in status.failure_reason
    assert_no_model(job)
    assert keys(bucket) == []


# --- an endpoint that refuses connections ---------------------------------------------------

def test_refused_endpoint_is_storage_unreachable_naming_it(refused: str) -> None:
    with pytest.raises(StorageUnreachable, match=f"cannot reach S3 endpoint {refused} to list s3://datasets/x/"):
        open_store("s3://datasets/x/").list("s3://datasets/x/")


def test_refused_endpoint_fails_stage_in_naming_channel_and_endpoint(refused: str) -> None:
    job = trainforge.submit_job(str(FAULTS), data={"train": "s3://datasets/digits/train/"})
    status = job.wait(timeout=60, raise_on_failure=False)
    assert status.phase is Phase.FAILED and status.attempts == 0
    assert status.failure_reason is not None
    assert status.failure_reason.startswith(
        f"input channel 'train': cannot reach S3 endpoint {refused} to list s3://datasets/digits/train/")
    assert_no_model(job)


def test_refused_endpoint_fails_stage_out_without_artifacts(refused: str, tmp_path: Path) -> None:
    job = trainforge.submit_job(str(FAULTS), hparams={"action": "ok"}, output="s3://models/")
    status = job.wait(timeout=60, raise_on_failure=False)
    assert status.phase is Phase.FAILED and status.attempts == 1
    assert status.failure_reason is not None
    assert f"cannot reach S3 endpoint {refused}" in status.failure_reason
    assert f"s3://models/default/{job.name}/" in status.failure_reason
    assert [c.type for c in status.conditions] == ["Created", "Scheduled", "Failed"]
    assert_no_model(job)
    assert status.artifacts.metrics is None and status.artifacts.logs is None
