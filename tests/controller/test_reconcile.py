"""The controller against the real control plane, kwok GPU nodes and MinIO.

kwok plays the kubelet: pods of a Job go Running and then Succeed at once, so
nothing inside the containers runs. What the stager would have uploaded
(metrics, model) the test writes into MinIO itself, openly, before submitting;
a failing trainer is the test patching its pod status, as a kubelet would.
"""

from __future__ import annotations

import io
import json
import tarfile
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.infra.waiting import wait_until
from trainforge.config import S3Settings, Settings
from trainforge.storage import open_store
from trainforge_controller import GROUP, PLURAL, VERSION
from trainforge_controller.main import Controller
from trainforge_controller.settings import ControllerSettings

GPU_16X = """
- name: gpu-16x
  cpus: 96
  memory_gib: 800
  gpus: 16
  tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
- name: gpu-1x
  cpus: 12
  memory_gib: 100
  gpus: 1
  node_selector: {nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3}
  tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
"""


class Harness:
    def __init__(self, kube: Any, api: Any, namespace: str, bucket: Any, tmp_path: Any):
        self.kube, self.api, self.ns, self.bucket = kube, api, namespace, bucket
        self.custom = client.CustomObjectsApi(api)
        self.batch = client.BatchV1Api(api)
        self.core = client.CoreV1Api(api)
        self.store_settings = Settings(home=tmp_path, s3=S3Settings(
            endpoint_url=bucket.endpoint, access_key_id=bucket.access_key,
            secret_access_key=bucket.secret_key, region=bucket.region))
        self.settings = ControllerSettings(
            default_output=bucket.uri("jobs/"), catalog_namespace=namespace,
            requeue_seconds=0.5, resync_seconds=5)
        self._running: list[tuple[threading.Event, threading.Thread]] = []

    def tenant_secret(self) -> None:
        """The namespace's object-store Secret, as an operator creates it: the
        parent of the jobs' own credentials, which the controller uses for
        everything a spec chose (a test may have made its own first)."""
        data = {k: v for k, v in self.bucket.env().items() if k != "AWS_ENDPOINT_URL_S3"}
        try:
            self.core.create_namespaced_secret(self.ns, {
                "metadata": {"name": self.settings.object_store_secret}, "stringData": data})
        except client.ApiException as exc:
            if exc.status != 409:
                raise

    def start(self) -> None:
        self.tenant_secret()
        stop = threading.Event()
        controller = Controller(self.kube.api_client(), self.settings, namespace=self.ns,
                                watch_seconds=2,
                                store_opener=lambda uri: open_store(uri, self.store_settings))
        thread = threading.Thread(target=controller.run, args=(stop,), daemon=True)
        thread.start()
        self._running.append((stop, thread))

    def stop(self) -> None:
        for stop, _ in self._running:
            stop.set()
        for _, thread in self._running:
            thread.join(timeout=10)
        self._running.clear()

    def submit(self, name: str, annotations: dict[str, str] | None = None,
               labels: dict[str, str] | None = None, **spec: Any) -> None:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingJob",
                "metadata": {"name": name, "annotations": annotations or {}, "labels": labels or {}},
                "spec": {"image": "registry.example.com/mnist:1.2", **spec}}
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, body)

    def get(self, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name)

    def wait_phase(self, name: str, phase: str, timeout: float = 45) -> dict[str, Any]:
        wait_until(lambda: (self.get(name).get("status") or {}).get("phase") == phase,
                   timeout=timeout, what=f"{name} to be {phase} (now {self.get(name).get('status')})",
                   watch=self.kube.processes)
        return self.get(name)

    def job(self, name: str) -> Any:
        return self.batch.read_namespaced_job(name, self.ns)

    def jobs(self, tj: str) -> list[str]:
        items = self.batch.list_namespaced_job(self.ns, label_selector=f"trainforge.dev/job-name={tj}").items
        return sorted(j.metadata.name for j in items)

    def pods(self, job: str) -> list[Any]:
        return self.core.list_namespaced_pod(self.ns, label_selector=f"job-name={job}").items

    def fail_pods(self, job: str, message: str) -> None:
        """What a kubelet reports for a trainer that wrote a failure file and exited 1."""
        for pod in self.pods(job):
            self.core.patch_namespaced_pod_status(pod.metadata.name, self.ns, {"status": {
                "phase": "Failed",
                "containerStatuses": [{
                    "name": "trainer", "image": pod.spec.containers[0].image, "imageID": "",
                    "ready": False, "restartCount": 0,
                    "state": {"terminated": {"exitCode": 1, "reason": "Error", "message": message,
                                             "startedAt": "2026-01-01T00:00:00Z",
                                             "finishedAt": "2026-01-01T00:00:01Z"}}}]}})

    def catalog(self, text: str) -> None:
        self.core.create_namespaced_config_map(self.ns, {
            "metadata": {"name": self.settings.catalog_configmap}, "data": {"instances.yaml": text}})

    def put(self, uri: str, data: bytes) -> None:
        open_store(uri, self.store_settings).write_bytes(uri, data)


@pytest.fixture
def harness(kube: Any, kube_api: Any, kube_namespace: str, minio_bucket: Any,
            trainforge_crd: Any, tmp_path: Any) -> Iterator[Harness]:
    h = Harness(kube, kube_api, kube_namespace, minio_bucket, tmp_path)
    h.start()
    yield h
    h.stop()


def _model_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"weights"
        info = tarfile.TarInfo("model.pt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_two_node_job_runs_to_completed_with_metrics_and_artifacts(harness: Harness) -> None:
    h = harness
    out = h.bucket.uri("models/")
    # What the stager sidecar of host 0 would upload when the trainer ends well.
    h.put(f"{out}{h.ns}/mnist/metrics/metrics.jsonl", b"".join(
        json.dumps({"name": "val:acc", "value": v, "step": s, "timestamp": 1700000000.0 + s}).encode() + b"\n"
        for s, v in enumerate([0.5, 0.9, 0.97])))
    h.put(f"{out}{h.ns}/mnist/output/model.tar.gz", _model_tar())
    h.submit("mnist", instance={"type": "gpu-8x", "count": 2},
             hyperparameters={"lr": "0.01"}, output={"uri": out},
             inputs=[{"channel": "train", "uri": h.bucket.uri("data/train/")}],
             checkpoints={"uri": h.bucket.uri("ckpt/mnist/")},
             metrics=[{"name": "val:acc", "regex": "val_acc=([0-9.]+)"}])
    wait_until(lambda: h.jobs("mnist") == ["mnist-a1"], timeout=30, what="Job mnist-a1")
    job = h.job("mnist-a1")
    assert (job.spec.parallelism, job.spec.completions, job.spec.completion_mode,
            job.spec.backoff_limit) == (2, 2, "Indexed", 0)
    assert job.metadata.owner_references[0].kind == "TrainingJob"
    pod = job.spec.template.spec
    trainer = pod.containers[0]
    assert trainer.resources.limits["nvidia.com/gpu"] == "8"
    assert trainer.termination_message_path == "/opt/ml/output/failure"
    env = {e.name: e.value for e in trainer.env}
    assert env["MASTER_ADDR"] == "mnist-a1-0.mnist" and env["WORLD_SIZE"] == "2"
    assert env["SM_HP_LR"] == "0.01" and env["SM_CHANNEL_TRAIN"] == "/opt/ml/input/data/train"
    assert pod.node_selector == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert pod.tolerations[0].key == "nvidia.com/gpu"
    assert pod.subdomain == "mnist"
    assert {v.name: v.empty_dir.medium for v in pod.volumes if v.empty_dir} == {"opt-ml": None, "dshm": "Memory",
                                                                                "stager-tmp": None}
    assert [v.secret.secret_name for v in pod.volumes if v.secret] == ["mnist-tf-storage"]  # its own credentials
    assert pod.automount_service_account_token is False and pod.security_context.run_as_non_root
    stage_in, sidecar = pod.init_containers
    assert stage_in.command == ["python", "-m", "trainforge.stage", "in"]
    assert sidecar.command[-1] == "sync" and sidecar.restart_policy == "Always"
    assert h.core.read_namespaced_service("mnist", h.ns).spec.cluster_ip == "None"

    tj = h.wait_phase("mnist", "Completed")
    status = tj["status"]
    assert status["finalMetrics"] == {"val:acc": 0.97}
    assert status["headlineMetric"] == "val:acc=0.97"
    assert status["artifacts"]["model"] == f"{out}{h.ns}/mnist/output/model.tar.gz"
    assert status["artifacts"]["checkpoints"] == h.bucket.uri("ckpt/mnist/")
    assert status["attempts"] == 1 and status["gpus"] == 16
    # the same condition types a local job records (trainforge.conditions)
    assert [c["type"] for c in status["conditions"]] == ["Created", "Scheduled", "Completed"]
    assert len(h.pods("mnist-a1")) == 2
    printed = h.kube.kubectl("get", "tj", "-n", h.ns).stdout
    assert "Completed" in printed and "val:acc=0.97" in printed


def test_not_enough_gpus_is_queued_then_stop_makes_it_stopped(harness: Harness) -> None:
    h = harness
    h.catalog(GPU_16X)
    h.submit("big", instance={"type": "gpu-16x", "count": 1})
    tj = h.wait_phase("big", "Queued")
    assert "Insufficient nvidia.com/gpu" in tj["status"]["message"]
    scheduled = next(c for c in tj["status"]["conditions"] if c["type"] == "Scheduled")
    assert scheduled["status"] == "False" and scheduled["reason"] == "Unschedulable"
    h.custom.patch_namespaced_custom_object(GROUP, VERSION, h.ns, PLURAL, "big", {
        "metadata": {"annotations": {"trainforge.dev/stop": "true"}}})
    tj = h.wait_phase("big", "Stopped")
    assert h.job("big-a1").spec.suspend is True
    assert tj["status"]["failureReason"] == "stopped on request"


def test_unknown_instance_type_fails_and_creates_nothing(harness: Harness) -> None:
    h = harness
    h.submit("nope", instance={"type": "tpu-v5", "count": 1})
    tj = h.wait_phase("nope", "Failed")
    assert "unknown instance type 'tpu-v5'" in tj["status"]["failureReason"]
    assert "gpu-8x" in tj["status"]["failureReason"]
    assert h.jobs("nope") == []


def test_max_runtime_becomes_the_jobs_deadline_and_fails_it(harness: Harness) -> None:
    h = harness
    h.catalog(GPU_16X)
    h.submit("slow", instance={"type": "gpu-16x"}, stopping={"maxRuntimeSeconds": 2})
    wait_until(lambda: h.jobs("slow") == ["slow-a1"], timeout=30, what="Job slow-a1")
    assert h.job("slow-a1").spec.active_deadline_seconds == 2
    tj = h.wait_phase("slow", "Failed")
    assert tj["status"]["failureReason"].startswith("MaxRuntimeExceeded")


def test_failed_attempt_is_retried_up_to_max_attempts(harness: Harness) -> None:
    h = harness
    h.catalog(GPU_16X)
    h.submit("flaky", instance={"type": "gpu-16x"}, retry={"maxAttempts": 2})
    wait_until(lambda: len(h.pods("flaky-a1")) == 1, timeout=30, what="pod of attempt 1")
    h.fail_pods("flaky-a1", "CUDA out of memory")
    wait_until(lambda: len(h.pods("flaky-a2")) == 1, timeout=30, what="pod of attempt 2")
    wait_until(lambda: h.get("flaky")["status"]["attempts"] == 2, timeout=10, what="attempts=2")
    h.fail_pods("flaky-a2", "CUDA out of memory again")
    tj = h.wait_phase("flaky", "Failed")
    assert tj["status"]["failureReason"] == "CUDA out of memory again"
    assert tj["status"]["attempts"] == 2
    assert h.jobs("flaky") == ["flaky-a1", "flaky-a2"]


def test_suspend_and_queue_label_are_passed_to_the_job(harness: Harness) -> None:
    h = harness
    h.submit("kq", labels={"kueue.x-k8s.io/queue-name": "team-a"},
             instance={"type": "gpu-1x"}, suspend=True)
    tj = h.wait_phase("kq", "Queued")
    job = h.job("kq-a1")
    assert job.spec.suspend is True
    assert job.metadata.labels["kueue.x-k8s.io/queue-name"] == "team-a"
    assert job.spec.template.metadata.labels["kueue.x-k8s.io/queue-name"] == "team-a"
    assert "suspended" in tj["status"]["message"]
    created = next(c for c in tj["status"]["conditions"] if c["type"] == "Created")
    assert created["message"] == "attempt 1 created"
    # One host: no rendezvous, so no Service (nor its Endpoints) and no subdomain.
    assert h.core.list_namespaced_service(h.ns).items == []
    assert job.spec.template.spec.subdomain is None
    # What Kueue does on admission: resume the Job.
    h.batch.patch_namespaced_job("kq-a1", h.ns, {"spec": {"suspend": False}})
    h.wait_phase("kq", "Completed")


def test_controller_restarted_mid_flight_creates_no_duplicate(harness: Harness) -> None:
    h = harness
    h.catalog(GPU_16X)
    h.submit("restart", instance={"type": "gpu-16x"}, retry={"maxAttempts": 3})
    h.wait_phase("restart", "Queued")
    h.stop()
    h.start()
    h.start()  # two controllers at once (no leader election here) still agree
    wait_until(lambda: (h.get("restart").get("status") or {}).get("observedGeneration") is not None,
               timeout=10, what="status")
    h.wait_phase("restart", "Queued")
    assert h.jobs("restart") == ["restart-a1"]
    assert len(h.pods("restart-a1")) == 1


def test_a_refused_child_create_is_terminal_with_the_apiservers_reason(harness: Harness) -> None:
    """A quota of zero Jobs makes the apiserver answer the Job create 403: the
    same body would get the same answer, so the job fails at once, saying why,
    instead of being retried for ever."""
    h = harness
    h.core.create_namespaced_resource_quota(h.ns, {
        "metadata": {"name": "no-jobs"}, "spec": {"hard": {"count/jobs.batch": "0"}}})
    h.submit("refused", instance={"type": "gpu-1x"})
    tj = h.wait_phase("refused", "Failed")
    reason = tj["status"]["failureReason"]
    assert reason.startswith("creating Job refused-a1 was refused (403 Forbidden)"), reason
    assert "quota" in reason
    failed = next(c for c in tj["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "ChildRejected"
    assert h.jobs("refused") == []
