"""Kueue admits TrainingJobs: the real Kueue (tests/infra/kueue_server.py) and
the controller against the real control plane with kwok GPU nodes.

kwok runs a pod of a Job to Succeeded at once, so a job that should hold its
quota while others wait uses an instance type whose node selector no node
matches: Kueue admits it (quota is bookkeeping, not placement) and its pod
stays Pending, holding the GPU until the job is stopped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.controller.test_chart import by_kind, objects, render
from tests.controller.test_reconcile import Harness
from tests.infra.fake_nodes import GPU_PRODUCT_LABEL, H100, NODE_KIND_LABEL
from tests.infra.waiting import wait_until
from trainforge.instances import DEFAULT_CATALOG
from trainforge.spec import TrainingJob
from trainforge_controller import GROUP, PLURAL, VERSION
from trainforge_controller.status import Observed, decide, kueue_state

KUEUE = ("kueue.x-k8s.io", "v1beta2")
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
GPU_TOLERATION = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
CATALOG = f"""
- name: gpu-1x
  cpus: 12
  memory_gib: 100
  gpus: 1
  node_selector: {{{GPU_PRODUCT_LABEL}: {H100}}}
  tolerations: [{{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}}]
- name: gpu-2x
  cpus: 24
  memory_gib: 200
  gpus: 2
  tolerations: [{{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}}]
- name: gpu-1x-nowhere
  cpus: 12
  memory_gib: 100
  gpus: 1
  node_selector: {{trainforge.dev/test-pool: nowhere}}
  tolerations: [{{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}}]
"""


class Queues:
    """A ResourceFlavor over the kwok GPU nodes, a ClusterQueue with a GPU quota
    open to one namespace, and its LocalQueue ``team`` there."""

    def __init__(self, api: Any, namespace: str, gpus: int):
        self.custom = client.CustomObjectsApi(api)
        self.ns, self.name = namespace, f"cq-{namespace}"[:63]
        self._create_cluster("resourceflavors", {"nodeLabels": {NODE_KIND_LABEL: "gpu"}})
        self._create_cluster("clusterqueues", {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "resourceGroups": [{"coveredResources": ["cpu", "memory", "nvidia.com/gpu"],
                                "flavors": [{"name": self.name, "resources": self.quota(gpus)}]}]})
        self.custom.create_namespaced_custom_object(*KUEUE, namespace, "localqueues", {
            "apiVersion": "/".join(KUEUE), "kind": "LocalQueue", "metadata": {"name": "team"},
            "spec": {"clusterQueue": self.name}})

    @staticmethod
    def quota(gpus: int) -> list[dict[str, Any]]:
        return [{"name": "cpu", "nominalQuota": "1000"}, {"name": "memory", "nominalQuota": "100Ti"},
                {"name": "nvidia.com/gpu", "nominalQuota": str(gpus)}]

    def _create_cluster(self, plural: str, spec: dict[str, Any]) -> None:
        kind = {"resourceflavors": "ResourceFlavor", "clusterqueues": "ClusterQueue"}[plural]
        self.custom.create_cluster_custom_object(*KUEUE, plural, {
            "apiVersion": "/".join(KUEUE), "kind": kind, "metadata": {"name": self.name}, "spec": spec})

    def set_gpus(self, gpus: int) -> None:
        cq = self.custom.get_cluster_custom_object(*KUEUE, "clusterqueues", self.name)
        cq["spec"]["resourceGroups"][0]["flavors"][0]["resources"] = self.quota(gpus)
        self.custom.replace_cluster_custom_object(*KUEUE, "clusterqueues", self.name, cq)

    def workloads(self) -> list[dict[str, Any]]:
        return self.custom.list_namespaced_custom_object(*KUEUE, self.ns, "workloads")["items"]

    def delete(self) -> None:
        for plural in ("clusterqueues", "resourceflavors"):
            try:  # finalizers: the ClusterQueue goes once its namespace's workloads have
                self.custom.delete_cluster_custom_object(*KUEUE, plural, self.name)
            except client.ApiException as exc:
                if exc.status != 404:
                    raise


@pytest.fixture
def kueue_harness(kueue: Any, kube: Any, kube_api: Any, kube_namespace: str, minio_bucket: Any,
                  trainforge_crd: Any, tmp_path: Path) -> Iterator[Harness]:
    h = Harness(kube, kube_api, kube_namespace, minio_bucket, tmp_path)
    h.settings = dataclasses.replace(h.settings, kueue=True)
    h.catalog(CATALOG)
    h.start()
    yield h
    h.stop()


def _status(h: Harness, name: str) -> dict[str, Any]:
    return h.get(name).get("status") or {}


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), {})


def test_within_quota_admitted_beyond_it_queued_with_kueues_reason_until_a_stop_frees_it(
        kueue_harness: Harness) -> None:
    h = kueue_harness
    queues = Queues(h.api, h.ns, gpus=1)
    try:
        h.submit("holder", labels={QUEUE_LABEL: "team"}, instance={"type": "gpu-1x-nowhere"})
        # Admitted: Kueue resumed the Job and put its flavor's node labels on the pods.
        wait_until(lambda: h.jobs("holder") and h.job("holder-a1").spec.suspend is False, timeout=60,
                   what="Kueue to admit holder-a1", watch=h.kube.processes)
        template = h.job("holder-a1").spec.template.spec
        assert template.node_selector == {"trainforge.dev/test-pool": "nowhere", NODE_KIND_LABEL: "gpu"}
        wait_until(lambda: _condition(_status(h, "holder"), "Admitted").get("status") == "True",
                   timeout=30, what="holder's Admitted condition")

        h.submit("waiter", labels={QUEUE_LABEL: "team"}, instance={"type": "gpu-1x"})
        wait_until(lambda: "insufficient unused quota for nvidia.com/gpu" in _status(h, "waiter").get("message", ""),
                   timeout=60, what=f"waiter Queued with Kueue's reason (now {_status(h, 'waiter')})")
        status = _status(h, "waiter")
        assert status["phase"] == "Queued"
        assert status["message"].startswith("suspended until Kueue admits it (LocalQueue team): ")
        admitted = _condition(status, "Admitted")
        assert admitted["status"] == "False" and admitted["reason"] == "Pending"
        assert h.job("waiter-a1").spec.suspend is True and h.pods("waiter-a1") == []

        # A stop deactivates holder's Workload: Kueue releases the GPU (and
        # does not resume the stopped Job); waiter is admitted and runs.
        h.custom.patch_namespaced_custom_object(GROUP, VERSION, h.ns, PLURAL, "holder", {
            "metadata": {"annotations": {"trainforge.dev/stop": "true"}}})
        h.wait_phase("holder", "Stopped", timeout=60)
        status = h.wait_phase("waiter", "Completed", timeout=60)["status"]
        assert _condition(status, "Admitted")["status"] == "True"
        holder = next(w for w in queues.workloads() if w["metadata"]["ownerReferences"][0]["name"] == "holder-a1")
        assert holder["spec"]["active"] is False
        assert h.job("holder-a1").spec.suspend is True
    finally:
        queues.delete()


def test_a_two_host_job_is_one_workload_admitted_all_or_nothing(kueue_harness: Harness) -> None:
    h = kueue_harness
    queues = Queues(h.api, h.ns, gpus=3)  # 2 hosts x 2 GPUs = 4 needed
    try:
        h.submit("pair", labels={QUEUE_LABEL: "team"}, instance={"type": "gpu-2x", "count": 2})
        wait_until(lambda: "nvidia.com/gpu" in _status(h, "pair").get("message", "")
                   and _condition(_status(h, "pair"), "Admitted").get("status") == "False",
                   timeout=60, what=f"pair Queued by Kueue (now {_status(h, 'pair')})")
        (workload,) = queues.workloads()  # one for the whole Job, both hosts in it
        assert [(p["name"], p["count"]) for p in workload["spec"]["podSets"]] == [("main", 2)]
        assert h.job("pair-a1").spec.suspend is True and h.pods("pair-a1") == []  # not one host of two

        queues.set_gpus(4)
        h.wait_phase("pair", "Completed", timeout=60)
        assert len(h.pods("pair-a1")) == 2
    finally:
        queues.delete()


def test_kueues_job_webhook_is_reached_by_url(kueue: Any, kube_api: Any, kube_namespace: str) -> None:
    """The upstream webhook configurations, registered by URL: a Job created
    running with a queue label comes back suspended (Kueue's defaulting)."""
    body = {"metadata": {"name": "plain", "labels": {QUEUE_LABEL: "team"}},
            "spec": {"suspend": False, "template": {"spec": {
                "restartPolicy": "Never", "tolerations": GPU_TOLERATION,
                "containers": [{"name": "c", "image": "busybox"}]}}}}
    job = client.BatchV1Api(kube_api).create_namespaced_job(kube_namespace, body)
    assert job.spec.suspend is True


# -- pure: Kueue's Workload -> why the job waits ---------------------------------
def _workload(*conditions: tuple[str, str, str, str], active: bool = True) -> dict[str, Any]:
    return {"metadata": {"name": "job-x-a1-1"}, "spec": {"active": active},
            "status": {"clusterQueue": "cq", "conditions": [
                {"type": t, "status": s, "reason": r, "message": m} for t, s, r, m in conditions]}}


@pytest.mark.parametrize(("workload", "expected"), [
    (None, ("WaitingForWorkload", "waiting for Kueue to queue it in LocalQueue team")),
    (_workload(("QuotaReserved", "False", "Pending", "couldn't assign flavors: 1 more needed")),
     ("Pending", "couldn't assign flavors: 1 more needed")),
    (_workload(("QuotaReserved", "False", "Inadmissible", "LocalQueue team doesn't exist")),
     ("Inadmissible", "LocalQueue team doesn't exist")),
    (_workload(("QuotaReserved", "True", "QuotaReserved", ""), ("Admitted", "False", "", "")),
     ("QuotaReserved", "quota reserved in ClusterQueue cq; waiting for its admission checks")),
    (_workload(("QuotaReserved", "True", "", ""), ("Admitted", "True", "Admitted", "")),
     ("Admitted", "admitted by Kueue to ClusterQueue cq")),
    (_workload(("Evicted", "True", "Preempted", "Preempted to accommodate a higher priority Workload")),
     ("Preempted", "evicted by Kueue: Preempted to accommodate a higher priority Workload")),
    (_workload(("Admitted", "True", "", ""), active=False), ("Deactivated", "its Kueue Workload is deactivated")),
], ids=["no-workload", "pending", "inadmissible", "admission-checks", "admitted", "evicted", "deactivated"])
def test_kueue_state_is_kueues_own_words(workload: dict[str, Any] | None, expected: tuple[str, str]) -> None:
    assert kueue_state(workload, "team") == expected


def test_chart_kueue_enabled_sets_the_flag_and_the_workload_rule(helm_binary: Path) -> None:
    docs = objects(render(helm_binary, "kueue.enabled=true"))
    deployment = next(d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "trainforge-controller")
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["TRAINFORGE_KUEUE"] == "true"
    rules = [r for d in by_kind(docs, "ClusterRole") for r in d["rules"] if "kueue.x-k8s.io" in r["apiGroups"]]
    assert rules == [{"apiGroups": ["kueue.x-k8s.io"], "resources": ["workloads"],
                      "verbs": ["list", "watch", "patch"]}]
    default = objects(render(helm_binary))
    assert not any("kueue.x-k8s.io" in r["apiGroups"] for d in by_kind(default, "ClusterRole") for r in d["rules"])


@pytest.mark.parametrize(("suspend", "active", "workload", "suspend_job", "deactivate", "phase"), [
    # admitted and running: suspend the Job (SIGTERM) and deactivate, else Kueue resumes it
    (False, 1, _workload(("Admitted", "True", "", "")), "mn-a1", "job-x-a1-1", "Training"),
    # still queued: deactivate, else Kueue would admit (resume) a stopped job later
    (True, 0, _workload(("QuotaReserved", "False", "Pending", "")), None, "job-x-a1-1", "Stopped"),
    (True, 0, _workload(active=False), None, None, "Stopped"),  # deactivated already
    (True, 0, None, None, None, "Stopped"),  # no Kueue (or no Workload): nothing to deactivate
], ids=["admitted", "queued", "deactivated", "no-workload"])
def test_a_stop_deactivates_the_kueue_workload(suspend: bool, active: int, workload: dict[str, Any] | None,
                                               suspend_job: str | None, deactivate: str | None,
                                               phase: str) -> None:
    tj = TrainingJob.model_validate({
        "metadata": {"name": "mn", "labels": {QUEUE_LABEL: "team"},
                     "annotations": {"trainforge.dev/stop": "true"}},
        "spec": {"image": "i", "instance": {"type": "gpu-8x"}},
        "status": {"phase": "Training" if not suspend else "Queued"}})
    job = {"metadata": {"name": "mn-a1", "labels": {"trainforge.dev/attempt": "1"}},
           "spec": {"suspend": suspend}, "status": {"active": active}}
    d = decide(tj, Observed(now=datetime.now(timezone.utc), instance=DEFAULT_CATALOG["gpu-8x"], jobs=[job],
                            workload=workload))
    assert (d.suspend_job, d.deactivate_workload) == (suspend_job, deactivate)
    assert d.status.phase.value == phase  # a running one is Stopped once its pods are gone


@pytest.mark.parametrize(("age", "phase", "message"), [
    (2, "Queued", "stopping: waiting for Kueue's Workload to deactivate it"),
    (120, "Stopped", "stopped on request"),  # Kueue made none in time (not running?): no wait for ever
], ids=["fresh", "no-workload-after-a-minute"])
def test_a_stop_before_kueue_made_the_workload_waits_for_it(age: int, phase: str, message: str) -> None:
    # Stopped at once, the Job would stay suspended until Kueue made its Workload
    # and admitted it: a Stopped TrainingJob's pods would then run.
    now = datetime.now(timezone.utc)
    tj = TrainingJob.model_validate({
        "metadata": {"name": "mn", "labels": {QUEUE_LABEL: "team"},
                     "annotations": {"trainforge.dev/stop": "true"}},
        "spec": {"image": "i", "instance": {"type": "gpu-8x"}},
        "status": {"phase": "Queued"}})
    created = (now - timedelta(seconds=age)).strftime("%Y-%m-%dT%H:%M:%SZ")
    job = {"metadata": {"name": "mn-a1", "labels": {"trainforge.dev/attempt": "1"}, "creationTimestamp": created},
           "spec": {"suspend": True}, "status": {}}
    d = decide(tj, Observed(now=now, instance=DEFAULT_CATALOG["gpu-8x"], jobs=[job], kueue=True))
    assert (d.status.phase.value, d.status.message) == (phase, message)
    assert d.deactivate_workload is None
    # Without the integration there is no Workload to wait for.
    off = decide(tj, Observed(now=now, instance=DEFAULT_CATALOG["gpu-8x"], jobs=[job]))
    assert off.status.phase.value == "Stopped"
