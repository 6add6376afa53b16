"""Trainer logs archived to the object store and regex metrics folded into the
job's metrics: the pure parts as tables, then the controller on the real
control plane, kwok nodes and MinIO.

kwok runs no containers, but it serves the kubelet API for its nodes: in the
namespace ``LOGS_NAMESPACE`` a trainer container "logged" what the test wrote
with ``kube.write_trainer_log``, read the real way (apiserver -> kubelet
endpoint). That test uses the controller's real reader end to end. The
two-host test hands the controller a reader with different text per host,
openly, in place of ``read_namespaced_pod_log`` (kwok's log is one file for
every pod); a third keeps the real reader where kwok has no log and checks that
a missing log is no archive and no failure.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
from kubernetes import client
from trainforge.backends.kubernetes import KubernetesBackend
from trainforge.metrics import MetricRecord, final_values
from trainforge.spec import Phase, TrainingJob, TrainingJobStatus
from trainforge.spec.models import MetricDefinition
from trainforge.staging import ArtifactURIs
from trainforge.storage import open_store
from trainforge_controller.archive import (
    fold,
    logs_to_archive,
    needs_fold,
    trainer_done,
)
from trainforge_controller.main import Controller
from trainforge_controller.status import Decision, Observed

from tests.controller.test_reconcile import Harness
from tests.infra.kube_cluster import LOGS_NAMESPACE
from tests.infra.waiting import wait_until

ART = ArtifactURIs.for_job("s3://bkt/jobs/", "ns", "j")
NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def pod(phase: str = "Running", trainer: str | None = "running", index: str | None = "0",
        attempt: str | None = "1", name: str = "j-a1-0") -> dict[str, Any]:
    labels = {k: v for k, v in (("batch.kubernetes.io/job-completion-index", index),
                                ("trainforge.dev/attempt", attempt)) if v is not None}
    statuses = [{"name": "trainer", "state": {trainer: {}}}] if trainer else []
    return {"metadata": {"name": name, "namespace": "ns", "labels": labels},
            "status": {"phase": phase, "containerStatuses": statuses}}


@pytest.mark.parametrize(("p", "done"), [
    (pod("Running", "running"), False),
    (pod("Pending", None), False),
    (pod("Running", "terminated"), True),  # the sidecar may still be uploading
    (pod("Succeeded", "terminated"), True),
    (pod("Failed", None), True),
    ({"metadata": {}}, False),
])
def test_trainer_done(p: dict[str, Any], done: bool) -> None:
    assert trainer_done(p) is done


def test_logs_to_archive_names_host_and_attempt_and_skips_what_it_cannot_name() -> None:
    pods = [pod("Succeeded", "terminated", index="1", attempt="2", name="j-a2-1"),
            pod("Running", "running", index="0", attempt="2", name="j-a2-0"),
            pod("Failed", None, index=None, name="stray"),
            pod("Succeeded", "terminated", index="x", name="odd")]
    todo = logs_to_archive(pods, ART)
    assert [(t.pod["metadata"]["name"], t.host, t.attempt, t.uri) for t in todo] == [
        ("j-a2-1", "algo-2", 2, "s3://bkt/jobs/ns/j/logs/algo-2-attempt-2.log")]


def rec(name: str, value: float, t: float = 1.0, step: int | None = None) -> MetricRecord:
    return MetricRecord(timestamp=t, name=name, value=value, step=step)


DEFS = [MetricDefinition(name="loss", regex=r"loss=([0-9.]+)"),
        MetricDefinition(name="acc", regex=r"acc=([0-9.]+)")]


def test_fold_scrapes_and_log_metric_wins_on_a_shared_name() -> None:
    text = "epoch 1 loss=0.9 acc=0.1\nepoch 2 loss=0.4 acc=0.2\nno metrics here\n"
    merged = fold(DEFS, text, [rec("acc", 0.95, t=5.0, step=2)], timestamp=9.0)
    assert [(r.name, r.value, r.step) for r in merged] == [("acc", 0.95, 2), ("loss", 0.9, 1), ("loss", 0.4, 2)]
    assert final_values(merged) == {"acc": 0.95, "loss": 0.4}


def test_fold_of_a_folded_file_changes_nothing() -> None:
    text = "loss=0.9\nloss=0.4 acc=0.5\n"
    once = fold(DEFS, text, [rec("acc", 0.95, t=5.0)], timestamp=9.0)
    assert fold(DEFS, text, once, timestamp=20.0) == once


def tj(metrics: bool = True, phase: Phase | None = None) -> TrainingJob:
    spec: dict[str, Any] = {"image": "i", "instance": {"type": "gpu-8x"}}
    if metrics:
        spec["metrics"] = [{"name": "loss", "regex": "loss=([0-9.]+)"}]
    job = TrainingJob.model_validate({"apiVersion": "trainforge.dev/v1alpha1", "kind": "TrainingJob",
                                      "metadata": {"name": "j"}, "spec": spec})
    if phase is not None:
        job.status = TrainingJobStatus(phase=phase)
    return job


def batch_job(attempt: int, condition: str | None) -> dict[str, Any]:
    conditions = [{"type": condition, "status": "True"}] if condition else []
    return {"metadata": {"name": f"j-a{attempt}", "labels": {"trainforge.dev/attempt": str(attempt)}},
            "status": {"conditions": conditions}}


@pytest.mark.parametrize(("job", "jobs", "verdict", "fold_now"), [
    (tj(), [batch_job(1, "Complete")], Phase.COMPLETED, True),
    (tj(), [batch_job(1, "Failed"), batch_job(2, "Failed")], Phase.FAILED, True),
    (tj(), [batch_job(1, "Failed")], Phase.PENDING, False),  # retried: not the final attempt
    (tj(), [batch_job(1, None)], Phase.TRAINING, False),
    (tj(phase=Phase.COMPLETED), [batch_job(1, "Complete")], Phase.COMPLETED, False),  # recorded already
    (tj(metrics=False), [batch_job(1, "Complete")], Phase.COMPLETED, False),
    (tj(), [], Phase.FAILED, False),  # unknown instance type: no attempt ran
])
def test_needs_fold(job: TrainingJob, jobs: list[dict[str, Any]], verdict: Phase, fold_now: bool) -> None:
    observed = Observed(now=NOW, jobs=jobs, artifacts=ART)
    assert needs_fold(job, observed, Decision(status=TrainingJobStatus(phase=verdict))) is fold_now


# -- the controller on the real control plane ---------------------------------------
class LogSource:
    """Stands in for the kubelet (kwok has none): known text per pod, and a
    count of reads, to show each log is read once."""

    def __init__(self) -> None:
        self.reads: dict[str, int] = {}
        self.lock = threading.Lock()

    def __call__(self, p: dict[str, Any], container: str) -> str:
        assert container == "trainer"
        name = p["metadata"]["name"]
        with self.lock:
            self.reads[name] = self.reads.get(name, 0) + 1
        index = p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"]
        return (f"host {index} starting\n"
                f"epoch 1 train_loss=0.90 val_acc=0.50\n"
                f"epoch 2 train_loss=0.{4 + int(index)}0 val_acc=0.70\n"
                "done\n")


class ArchiveHarness(Harness):
    read_log: Any = None

    def start(self) -> None:
        self.tenant_secret()
        stop = threading.Event()
        controller = Controller(self.kube.api_client(), self.settings, namespace=self.ns, watch_seconds=2,
                                store_opener=lambda uri: open_store(uri, self.store_settings),
                                read_log=self.read_log)
        thread = threading.Thread(target=controller.run, args=(stop,), daemon=True)
        thread.start()
        self._running.append((stop, thread))
        self.controller = controller


@pytest.fixture
def archive_harness(kube: Any, kube_api: Any, kube_namespace: str, minio_bucket: Any,
                    trainforge_crd: Any, tmp_path: Any) -> Iterator[ArchiveHarness]:
    h = ArchiveHarness(kube, kube_api, kube_namespace, minio_bucket, tmp_path)
    yield h
    h.stop()


def _read(h: Harness, uri: str) -> str:
    return open_store(uri, h.store_settings).read_bytes(uri).decode()


def test_logs_are_archived_once_and_regex_metrics_reach_status_and_sdk_after_pods_are_gone(
        archive_harness: ArchiveHarness) -> None:
    h = archive_harness
    h.read_log = source = LogSource()
    h.start()
    out = h.bucket.uri("models/")
    art = ArtifactURIs.for_job(out, h.ns, "scrape")
    # What the stager sidecar of host 0 uploads: the runtime's log_metric records.
    h.put(art.metrics, json.dumps({"name": "val:acc", "value": 0.97, "step": 2,
                                   "timestamp": 1700000000.0}).encode() + b"\n")
    h.submit("scrape", instance={"type": "gpu-8x", "count": 2}, output={"uri": out},
             metrics=[{"name": "train:loss", "regex": r"train_loss=([0-9.]+)"},
                      {"name": "val:acc", "regex": r"val_acc=([0-9.]+)"}])
    status = h.wait_phase("scrape", "Completed")["status"]

    # The final status already holds the regex metric; log_metric's val:acc beat the scraped one.
    assert status["finalMetrics"] == {"val:acc": 0.97, "train:loss": 0.4}
    assert status["artifacts"]["metrics"] == art.metrics
    assert status["artifacts"]["logs"] == art.logs
    logs = {i: _read(h, art.log(f"algo-{i}", 1)) for i in (1, 2)}
    assert "train_loss=0.40" in logs[1] and "train_loss=0.50" in logs[2]
    records = [MetricRecord.from_json(line) for line in _read(h, art.metrics).splitlines()]
    assert [(r.name, r.value) for r in records if r.name == "train:loss"] == [("train:loss", 0.9),
                                                                            ("train:loss", 0.4)]
    assert [r.value for r in records if r.name == "val:acc"] == [0.97]

    # Read once per pod; a restarted controller does not read or write again.
    pods = sorted(p.metadata.name for p in h.pods("scrape-a1"))
    reads = {name: n for name, n in source.reads.items() if name in pods}
    assert reads == {name: 1 for name in pods}, source.reads
    before = _read(h, art.metrics)
    h.stop()
    h.start()
    wait_until(lambda: h.controller.reconciles >= 1, timeout=10, what="a pass of the new controller")
    assert {name: source.reads[name] for name in pods} == reads
    assert _read(h, art.metrics) == before

    # The pods go; the SDK reads logs and metrics from the archive.
    for name in pods:
        h.core.delete_namespaced_pod(name, h.ns, grace_period_seconds=0)
    wait_until(lambda: not h.pods("scrape-a1"), timeout=30, what="pods of scrape-a1 deleted")
    backend = KubernetesBackend(h.store_settings, namespace=h.ns, api_client=h.api, output=out)
    lines = list(backend.logs("scrape"))
    assert lines == logs[1].splitlines() + logs[2].splitlines()
    assert final_values(backend.metrics("scrape")) == {"val:acc": 0.97, "train:loss": 0.4}


def test_kwok_pods_have_no_log_so_none_is_archived_and_the_job_still_completes(
        archive_harness: ArchiveHarness) -> None:
    h = archive_harness
    h.start()  # the real reader; outside LOGS_NAMESPACE kwok's kubelet API has no log to give
    out = h.bucket.uri("models/")
    art = ArtifactURIs.for_job(out, h.ns, "nolog")
    h.put(art.metrics, json.dumps({"name": "val:acc", "value": 0.5, "timestamp": 1.0}).encode() + b"\n")
    h.submit("nolog", output={"uri": out}, metrics=[{"name": "loss", "regex": r"loss=([0-9.]+)"}])
    status = h.wait_phase("nolog", "Completed")["status"]
    assert status["finalMetrics"] == {"val:acc": 0.5}
    store = open_store(art.logs, h.store_settings)
    assert store.list(art.logs) == []  # no fabricated log
    with pytest.raises(client.ApiException):  # what the reader met
        h.core.read_namespaced_pod_log(h.pods("nolog-a1")[0].metadata.name, h.ns, container="trainer",
                                       _request_timeout=10)


@pytest.fixture
def logs_harness(kube: Any, kube_api: Any, minio_bucket: Any, trainforge_crd: Any,
                 tmp_path: Any) -> Iterator[ArchiveHarness]:
    """The controller, with its real log reader, on the namespace where kwok's
    kubelet API has trainer logs."""
    core = client.CoreV1Api(kube_api)
    try:
        core.create_namespace({"metadata": {"name": LOGS_NAMESPACE}})
    except client.ApiException as exc:
        if exc.status != 409:
            raise
    wait_until(lambda: core.read_namespaced_service_account("default", LOGS_NAMESPACE), timeout=30,
               what=f"service account {LOGS_NAMESPACE}/default")
    h = ArchiveHarness(kube, kube_api, LOGS_NAMESPACE, minio_bucket, tmp_path)
    yield h
    h.stop()
    kube.write_trainer_log([])


def test_trainer_log_through_the_kubelet_api_is_read_live_archived_and_folded(
        logs_harness: ArchiveHarness) -> None:
    h = logs_harness
    trained = ["epoch 1 train_loss=0.90", "epoch 2 train_loss=0.35", "done \u2713"]
    h.kube.write_trainer_log(trained)
    h.start()  # the real reader: GET pods/log, answered by kwok's kubelet endpoint
    out = h.bucket.uri("kubelet/")
    art = ArtifactURIs.for_job(out, h.ns, "kubelet-log")
    h.submit("kubelet-log", output={"uri": out},
             metrics=[{"name": "train:loss", "regex": r"train_loss=([0-9.]+)"}])
    status = h.wait_phase("kubelet-log", "Completed")["status"]
    assert status["finalMetrics"] == {"train:loss": 0.35}  # folded from the log itself
    assert _read(h, art.log("algo-1", 1)).splitlines() == trained

    backend = KubernetesBackend(h.store_settings, namespace=h.ns, api_client=h.api, output=out)
    h.kube.write_trainer_log(["the kubelet's log now"])
    assert list(backend.logs("kubelet-log")) == ["the kubelet's log now"]  # live, while the pod exists
    for pod in h.pods("kubelet-log-a1"):
        h.core.delete_namespaced_pod(pod.metadata.name, h.ns, grace_period_seconds=0)
    wait_until(lambda: not h.pods("kubelet-log-a1"), timeout=30, what="pods of kubelet-log-a1 deleted")
    assert list(backend.logs("kubelet-log")) == trained  # the archive, once the pod is gone


@pytest.mark.parametrize("kubelet_says", [
    "unable to retrieve container logs for containerd://abc",
    # the container still listed, its log file already removed (seen on the real node after an eviction)
    'failed to try resolving symlinks in path "/var/log/pods/ns_p_uid/trainer/0.log": '
    "lstat /var/log/pods/ns_p_uid/trainer/0.log: no such file or directory",
], ids=["container-gone", "log-file-gone"])
def test_a_pod_being_deleted_is_archived_early_then_again_when_its_trainer_ends(kubelet_says: str) -> None:
    """An evicted or stopped pod can lose its containers within a second of its
    trainer's end: its log is read at once, and read again once whole; the
    kubelet's answer for a log that is gone never replaces the early copy."""
    from trainforge_controller.archive import Archiver
    from trainforge_controller.status import Observed
    from trainforge.spec import TrainingJob

    class Store:
        def __init__(self) -> None:
            self.objects: dict[str, bytes] = {}

        def exists(self, uri: str) -> bool:
            return uri in self.objects

        def write_bytes(self, uri: str, data: bytes) -> None:
            self.objects[uri] = data

    store = Store()
    logs = iter(["epoch=1\n", "epoch=1\nstopped by SIGTERM\n", kubelet_says, "epoch=1\n", kubelet_says])
    archiver = Archiver(None, lambda job, uri: store, read_log=lambda p, c: next(logs))  # type: ignore[arg-type]
    job = TrainingJob.model_validate({"metadata": {"name": "j", "namespace": "ns"}, "spec": {"image": "i"}})
    going = pod("Running", "running")
    going["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    observe = lambda p: Observed(now=NOW, pods=[p], artifacts=ART)  # noqa: E731
    uri = ART.log("algo-1", 1)
    assert archiver.archive_logs(job, observe(going)) == 1 and store.objects[uri] == b"epoch=1\n"
    assert archiver.archive_logs(job, observe(going)) == 0  # still running: not read again
    ended = pod("Running", "terminated")
    ended["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert archiver.archive_logs(job, observe(ended)) == 1
    assert store.objects[uri] == b"epoch=1\nstopped by SIGTERM\n"
    assert archiver.archive_logs(job, observe(ended)) == 0  # whole now: never read again
    del store.objects[uri]
    assert archiver.archive_logs(job, observe(ended)) == 0 and uri not in store.objects  # the kubelet's words
    # early copy, then the log file is gone by the time the trainer has ended: the copy stays
    other = ART.log("algo-1", 2)
    going["metadata"]["labels"]["trainforge.dev/attempt"] = ended["metadata"]["labels"]["trainforge.dev/attempt"] = "2"
    assert archiver.archive_logs(job, observe(going)) == 1 and store.objects[other] == b"epoch=1\n"
    assert archiver.archive_logs(job, observe(ended)) == 0 and store.objects[other] == b"epoch=1\n"
