"""The dashboard's API over the kubernetes backend: the same code path as
for local jobs (rows from ``backend.list``, curves from ``backend.metrics``,
logs, stop), against the real control plane with the controller running."""

from __future__ import annotations

import json

from trainforge.backends.kubernetes import KubernetesBackend
from trainforge.client import Job
from trainforge.dashboard.api import DashboardAPI
from trainforge.spec import Phase, TrainingJob

from tests.controller.test_reconcile import GPU_16X, Harness, harness  # noqa: F401 - fixture
from tests.infra.waiting import wait_until


def test_dashboard_api_over_the_cluster(harness: Harness) -> None:  # noqa: F811
    out = harness.bucket.uri("jobs/")
    backend = KubernetesBackend(harness.store_settings, namespace=harness.ns,
                                kubeconfig=str(harness.kube.kubeconfig), output=out)
    harness.put(f"{out}{harness.ns}/ui-job/metrics/metrics.jsonl", b"".join(
        json.dumps({"name": "loss", "value": 1.0 / step, "step": step, "timestamp": float(step)}).encode() + b"\n"
        for step in range(1, 101)))
    harness.put(f"{out}{harness.ns}/ui-job/logs/algo-1-attempt-1.log", b"epoch 1\n<script>x</script>\n")
    backend.submit(TrainingJob.model_validate({"metadata": {"name": "ui-job", "labels": {"team": "a"}},
                                               "spec": {"image": "img:1", "instance": {"type": "gpu-1x"},
                                                        "hyperparameters": {"lr": "0.1"}}}))
    Job("ui-job", backend).wait(timeout=45)
    api = DashboardAPI(backend, index=None)
    page = api.runs({"label": "team=a", "columns": "hp:lr,metric:loss"})
    assert [(r["name"], r["phase"], r["cells"]) for r in page["rows"]] == [("ui-job", "Completed", ["0.1", 0.01])]
    curve = api.metrics("ui-job", {"width": "10"})["series"]["loss"]
    assert curve["points"] == 100 and len(curve["x"]) == 10 and curve["y"][0] == 1.0
    assert api.logs("ui-job", {})["lines"] == ["epoch 1", "<script>x</script>"]
    assert api.run("ui-job")["summary"]["billable_seconds"] >= 0

    harness.catalog(GPU_16X)
    backend.submit(TrainingJob.model_validate({"metadata": {"name": "ui-stop"},
                                               "spec": {"image": "img:1", "instance": {"type": "gpu-16x"}}}))
    wait_until(lambda: backend.get("ui-stop").status.phase == Phase.QUEUED, timeout=30, what="Queued")
    api.stop("ui-stop")
    wait_until(lambda: backend.get("ui-stop").status.phase == Phase.STOPPED, timeout=30, what="Stopped")
