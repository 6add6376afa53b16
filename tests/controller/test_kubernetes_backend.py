"""KubernetesBackend (the SDK side) against the real cluster, with the controller running."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.controller.test_reconcile import GPU_16X, Harness, harness  # noqa: F401 - fixture
from tests.infra.waiting import wait_until
from trainforge.backends.kubernetes import KubernetesBackend
from trainforge.client import Job
from trainforge.errors import JobNotFound, SpecError
from trainforge.spec import Phase, TrainingJob


@pytest.fixture
def backend(harness: Harness) -> KubernetesBackend:  # noqa: F811
    return KubernetesBackend(harness.store_settings, namespace=harness.ns,
                             kubeconfig=str(harness.kube.kubeconfig),
                             output=harness.bucket.uri("jobs/"))


def _job(name: str, **spec: Any) -> TrainingJob:
    return TrainingJob.model_validate({"metadata": {"name": name},
                                       "spec": {"image": "img:1", "instance": {"type": "gpu-1x"}, **spec}})


def test_submit_wait_metrics_logs_list(harness: Harness, backend: KubernetesBackend) -> None:  # noqa: F811
    out = harness.bucket.uri("jobs/")
    harness.put(f"{out}{harness.ns}/sdk-job/metrics/metrics.jsonl",
                json.dumps({"name": "loss", "value": 0.25, "step": 3, "timestamp": 1.0}).encode() + b"\n")
    harness.put(f"{out}{harness.ns}/sdk-job/logs/algo-1-attempt-1.log", b"epoch 1\nloss=0.25\n")
    backend.submit(_job("sdk-job"))
    status = Job("sdk-job", backend).wait(timeout=45)
    assert status.phase == Phase.COMPLETED and status.final_metrics == {"loss": 0.25}
    assert [r.value for r in backend.metrics("sdk-job")] == [0.25]
    assert list(backend.logs("sdk-job")) == ["epoch 1", "loss=0.25"]
    assert [j.name for j in backend.list()] == ["sdk-job"]
    with pytest.raises(JobNotFound, match="sdk-job-x"):
        backend.get("sdk-job-x")


def test_stop_through_the_backend(harness: Harness, backend: KubernetesBackend) -> None:  # noqa: F811
    harness.catalog(GPU_16X)
    backend.submit(_job("sdk-stop", instance={"type": "gpu-16x"}))
    wait_until(lambda: backend.get("sdk-stop").status.phase == Phase.QUEUED, timeout=30, what="Queued")
    backend.stop("sdk-stop")
    wait_until(lambda: backend.get("sdk-stop").status.phase == Phase.STOPPED, timeout=30, what="Stopped")


def test_apiserver_rejection_is_a_spec_error(backend: KubernetesBackend) -> None:
    job = _job("sdk-bad")
    body = job.model_copy()
    backend.submit(body)
    with pytest.raises(Exception) as info:
        backend.submit(body)
    assert "already exists" in str(info.value)
    # Bypass pydantic to see the apiserver's own verdict mapped to SpecError.
    raw = job.to_dict()
    raw["metadata"] = {"name": "sdk-bad2"}
    raw["spec"]["retry"] = {"maxAttempts": 0}
    with pytest.raises(SpecError, match="maxAttempts"):
        try:
            backend.custom.create_namespaced_custom_object(
                "trainforge.dev", "v1alpha1", backend.namespace, "trainingjobs", raw)
        except backend._client.ApiException as exc:
            raise backend._error(exc, "sdk-bad2", "creating") from exc
