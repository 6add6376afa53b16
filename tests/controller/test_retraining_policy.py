"""A RetrainingPolicy on the real control plane, its data and registry on the
real MinIO: the reconciler (driven pass by pass with its clock) fires on new
data and on schedule, creates owned TrainingJobs from the template, gates a
completed one, registers and promotes it, and leaves a gated-out one
unpromoted. The children's status is written here, as the TrainingJob
controller would: this test is about the policy, not about training."""

from __future__ import annotations

import io
import tarfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_process_backend_s3 import use_s3

ROOT = Path(__file__).resolve().parents[2]
POLICY_CRD = ROOT / "k8s" / "crds" / "trainforge.dev_retrainingpolicies.yaml"
T0 = datetime(2026, 12, 7, 2, 1, tzinfo=timezone.utc)


@pytest.fixture(scope="session")
def policy_crd(kube: Any, trainforge_crd: Path) -> Path:
    kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(POLICY_CRD))
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/retrainingpolicies.trainforge.dev")
    return POLICY_CRD


def test_committed_crd_is_in_sync() -> None:
    from trainforge_controller.retraining.crd import main

    assert main(["--check"]) == 0


def model_tar(text: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("model.txt")
        info.size = len(text)
        tar.addfile(info, io.BytesIO(text.encode()))
    return buffer.getvalue()


def test_policy_fires_on_data_and_schedule_gates_registers_promotes(
        policy_crd: Path, kube_api: Any, kube_namespace: str, minio_bucket: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from kubernetes import client
    from trainforge.registry import ModelRegistry
    from trainforge.storage import open_store
    from trainforge_controller.retraining.reconciler import POLICY_LABEL, RetrainingReconciler

    use_s3(monkeypatch, tmp_path / "home", minio_bucket.endpoint, minio_bucket.access_key, minio_bucket.secret_key,
           minio_bucket.region)
    store = open_store(minio_bucket.uri())
    store.write_bytes(minio_bucket.uri("data/train/part-0.csv"), b"1,2,3\n")
    custom = client.CustomObjectsApi(kube_api)
    ns = kube_namespace
    custom.create_namespaced_custom_object("trainforge.dev", "v1alpha1", ns, "retrainingpolicies", {
        "apiVersion": "trainforge.dev/v1alpha1", "kind": "RetrainingPolicy", "metadata": {"name": "digits"},
        "spec": {
            "trainingJobTemplate": {
                "image": "reg.example/digits:1",
                "inputs": [{"channel": "train", "uri": minio_bucket.uri("data/train/")}],
                "output": {"uri": minio_bucket.uri("artifacts/")},
                "metrics": [{"name": "validation:accuracy", "regex": "val_acc=([0-9.]+)"}]},
            "schedule": "0 3 * * *",
            "dataTrigger": {"checkIntervalSeconds": 300},
            "gate": {"metric": "validation:accuracy", "min": 0.9, "maxRegression": 0.01},
            "model": {"name": "digits", "registry": minio_bucket.uri("registry/"), "promoteTo": "production"},
        }})
    now = [T0]
    reconciler = RetrainingReconciler(kube_api, clock=lambda: now[0])

    def policy() -> dict[str, Any]:
        return custom.get_namespaced_custom_object("trainforge.dev", "v1alpha1", ns, "retrainingpolicies", "digits")

    def finish(job: str, accuracy: float) -> None:
        model = minio_bucket.uri(f"artifacts/{ns}/{job}/output/model.tar.gz")
        store.write_bytes(model, model_tar(f"{job} {accuracy}"))
        custom.patch_namespaced_custom_object_status("trainforge.dev", "v1alpha1", ns, "trainingjobs", job, {
            "status": {"phase": "Completed", "finalMetrics": {"validation:accuracy": accuracy},
                       "artifacts": {"model": model}}})

    # New data (the first listing): a run starts, owned by the policy.
    reconciler.reconcile(ns, "digits")
    child = custom.get_namespaced_custom_object("trainforge.dev", "v1alpha1", ns, "trainingjobs", "digits-1")
    assert child["metadata"]["labels"][POLICY_LABEL] == "digits"
    assert child["metadata"]["ownerReferences"][0]["uid"] == policy()["metadata"]["uid"]
    assert child["spec"]["image"] == "reg.example/digits:1"
    status = policy()["status"]
    assert status["active"] == "digits-1" and status["history"][0]["trigger"].startswith("new data ")

    # Completed and good: gated, registered, promoted.
    finish("digits-1", 0.95)
    now[0] = T0 + timedelta(minutes=1)
    assert reconciler.reconcile(ns, "digits") == 1.0
    registry = ModelRegistry(minio_bucket.uri("registry/"), namespace=ns)
    assert registry.aliases("digits") == {"production": 1}
    assert registry.get("digits@1").job_name == "digits-1"
    run = policy()["status"]["history"][0]
    assert (run["version"], run["promoted"], run["phase"]) == (1, True, "Completed")
    assert "active" not in policy()["status"]

    # Nothing new until the schedule (03:00); the same data does not fire again.
    now[0] = T0 + timedelta(minutes=20)
    reconciler.reconcile(ns, "digits")
    assert policy()["status"]["runsStarted"] == 1
    now[0] = datetime(2026, 12, 7, 3, 0, 30, tzinfo=timezone.utc)
    reconciler.reconcile(ns, "digits")
    status = policy()["status"]
    assert status["active"] == "digits-2" and status["history"][0]["trigger"] == "schedule 2026-12-07T03:00:00Z"

    # Worse than production: gated out, registered nowhere, production unchanged.
    finish("digits-2", 0.91)
    now[0] += timedelta(minutes=1)
    reconciler.reconcile(ns, "digits")
    run = policy()["status"]["history"][0]
    assert run["gate"].startswith("failed: ") and "worse by 0.04" in run["gate"]
    assert run.get("version") is None and run["promoted"] is False
    assert [v.version for v in registry.versions("digits")] == [1] and registry.aliases("digits") == {"production": 1}

    # New data in MinIO: the next data check fires a run.
    store.write_bytes(minio_bucket.uri("data/train/part-1.csv"), b"4,5,6\n")
    now[0] += timedelta(minutes=6)
    reconciler.reconcile(ns, "digits")
    status = policy()["status"]
    assert status["active"] == "digits-3" and status["history"][0]["trigger"].startswith("new data ")
    finish("digits-3", 0.97)
    now[0] += timedelta(minutes=1)
    reconciler.reconcile(ns, "digits")
    assert registry.aliases("digits") == {"production": 2}
    assert registry.get("digits@production").job_name == "digits-3"
    assert [r["job"] for r in policy()["status"]["history"]] == ["digits-3", "digits-2", "digits-1"]


def test_the_controllers_loop_drives_a_policy_to_production(
        policy_crd: Path, kube_api: Any, kube_namespace: str, minio_bucket: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The loop the controller starts: a new policy is picked up, its run
    followed while active, and the completed run promoted, with no pass driven
    by hand."""
    import threading

    from kubernetes import client
    from trainforge.registry import ModelRegistry
    from trainforge.storage import open_store
    from trainforge_controller.retraining.loop import RetrainingLoop

    from tests.infra.waiting import wait_until

    use_s3(monkeypatch, tmp_path / "home", minio_bucket.endpoint, minio_bucket.access_key, minio_bucket.secret_key,
           minio_bucket.region)
    store = open_store(minio_bucket.uri())
    store.write_bytes(minio_bucket.uri("data/part-0.csv"), b"1\n")
    custom = client.CustomObjectsApi(kube_api)
    ns = kube_namespace
    custom.create_namespaced_custom_object("trainforge.dev", "v1alpha1", ns, "retrainingpolicies", {
        "apiVersion": "trainforge.dev/v1alpha1", "kind": "RetrainingPolicy", "metadata": {"name": "loop"},
        "spec": {"trainingJobTemplate": {"image": "reg.example/digits:1",
                                         "inputs": [{"channel": "train", "uri": minio_bucket.uri("data/")}],
                                         "metrics": [{"name": "acc", "regex": "acc=([0-9.]+)"}]},
                 "dataTrigger": {}, "gate": {"metric": "acc", "min": 0.5},
                 "model": {"name": "loop", "registry": minio_bucket.uri("registry/"), "promoteTo": "production"}}})
    stop = threading.Event()
    thread = threading.Thread(target=RetrainingLoop(kube_api, ns, poll_seconds=0.2).run, args=(stop,), daemon=True)
    thread.start()
    try:
        def child() -> Any:
            try:
                return custom.get_namespaced_custom_object("trainforge.dev", "v1alpha1", ns, "trainingjobs", "loop-1")
            except client.ApiException:
                return None

        wait_until(child, timeout=30, what="the policy's first TrainingJob")
        model = minio_bucket.uri(f"artifacts/{ns}/loop-1/output/model.tar.gz")
        store.write_bytes(model, model_tar("loop-1"))
        custom.patch_namespaced_custom_object_status("trainforge.dev", "v1alpha1", ns, "trainingjobs", "loop-1", {
            "status": {"phase": "Completed", "finalMetrics": {"acc": 0.8}, "artifacts": {"model": model}}})
        registry = ModelRegistry(minio_bucket.uri("registry/"), namespace=ns)
        wait_until(lambda: registry.alias("loop", "production").version == 1, timeout=30,
                   what="loop@production = 1")
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
