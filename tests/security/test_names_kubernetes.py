"""Names are names on the Kubernetes backend too (issue 9): a taken name is
refused before submit_job uploads anything under it, and the apiserver's 409
is the same JobExists. Real control plane and MinIO (tests/controller harness)."""

from __future__ import annotations

from pathlib import Path

import pytest

import trainforge
from tests.controller.conftest import trainforge_crd  # noqa: F401 - fixture
from tests.controller.test_reconcile import Harness, harness  # noqa: F401 - fixture
from trainforge.backends.kubernetes import KubernetesBackend
from trainforge.errors import InvalidJobName, JobExists
from trainforge.spec import TrainingJob
from trainforge.storage import open_store


@pytest.fixture
def backend(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> KubernetesBackend:  # noqa: F811
    bucket = harness.bucket
    # submit_job uploads with the default settings: point them at this MinIO, so an
    # upload that should not happen would succeed and show.
    for variable, value in (("TRAINFORGE_S3_ENDPOINT_URL", bucket.endpoint), ("AWS_ACCESS_KEY_ID", bucket.access_key),
                            ("AWS_SECRET_ACCESS_KEY", bucket.secret_key), ("AWS_DEFAULT_REGION", bucket.region)):
        monkeypatch.setenv(variable, value)
    monkeypatch.setenv("TRAINFORGE_HOME", str(harness.store_settings.home))
    return KubernetesBackend(harness.store_settings, namespace=harness.ns, kubeconfig=str(harness.kube.kubeconfig),
                             output=bucket.uri("jobs/"), data_root=bucket.uri("data/"))


def _job(name: str) -> TrainingJob:
    return TrainingJob.model_validate({"metadata": {"name": name}, "spec": {"image": "img:1"}})


def test_a_taken_name_uploads_nothing(harness: Harness, backend: KubernetesBackend, tmp_path: Path) -> None:  # noqa: F811
    backend.submit(_job("taken"))
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.csv").write_text("would overwrite the running job's input\n")
    with pytest.raises(JobExists, match=f"training job {harness.ns}/taken already exists"):
        trainforge.submit_job("img:1", data=str(data), name="taken", backend=backend)
    prefix = harness.bucket.uri("data/")
    assert open_store(prefix, harness.store_settings).list(prefix) == []
    with pytest.raises(JobExists):  # the apiserver's own 409, when two submits race
        backend.submit(_job("taken"))


def test_names_are_checked_before_the_api(backend: KubernetesBackend) -> None:
    for attempt in (lambda: backend.get("../taken"), lambda: backend.stop("x/y"), lambda: backend.metrics("A")):
        with pytest.raises(InvalidJobName):
            attempt()
