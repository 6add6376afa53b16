"""TrainingJobs on a real kubelet node (``kube_node``): the controller's pods
really run — the stager image's init container stages in from the real MinIO
with the job's own STS credentials, the digits example trains (the host's
PyTorch lent through the node's read-only mount), the native sidecar syncs
checkpoints and stages out, and the kubelet's termination message carries the
failure file. Nothing here is written on the containers' behalf.

The pods use the node's network (controller setting ``host_network``): the
test bed has no kube-proxy or cluster DNS, and MinIO listens on 127.0.0.1.
"""

from __future__ import annotations

import json
import subprocess
import tarfile
import time
from datetime import datetime
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.controller.test_reconcile import Harness
from tests.infra.kube_node import NODE_LABEL, NODE_TAINT
from tests.infra.waiting import wait_until
from tests.integration.conftest import example_images, trainforge_base_image  # noqa: F401 - fixtures
from tests.integration.test_stager_image import stager_image  # noqa: F401 - fixture
from trainforge.backends.kubernetes import KubernetesBackend
from trainforge.client import Job
from trainforge.examples import write_digits_dataset
from trainforge.spec import Phase

pytestmark = pytest.mark.slow

# One instance type that lands on the real node (2 cores on CI): the trainer and
# its two stagers fit beside each other.
REAL_NODE_CATALOG = f"""
- name: real-cpu
  cpus: 1
  memory_gib: 2
  gpus: 0
  node_selector: {{{NODE_LABEL[0]}: "{NODE_LABEL[1]}"}}
  tolerations: [{json.dumps(NODE_TAINT)}]
- name: real-half
  cpus: 0.5
  memory_gib: 1
  gpus: 0
  node_selector: {{{NODE_LABEL[0]}: "{NODE_LABEL[1]}"}}
  tolerations: [{json.dumps(NODE_TAINT)}]
"""
DIGITS_METRICS = [{"name": "validation:accuracy", "regex": r"val_acc=([0-9.]+)"},
                  {"name": "train:loss", "regex": r"train_loss=([0-9.eE+-]+)"}]


@pytest.fixture(scope="module")
def node_images(kube_node: Any, container_engine: Any, example_images: dict[str, str],  # noqa: F811
                stager_image: str) -> dict[str, str]:  # noqa: F811
    """The stager and the examples, loaded into the node's containerd (no registry)."""
    started = time.monotonic()
    for tag in (stager_image, *example_images.values()):
        kube_node.load_image(container_engine, tag)
    print(f"images loaded into the node in {time.monotonic() - started:.1f} s")
    return {"stager": stager_image, **example_images}


@pytest.fixture
def real(kube: Any, kube_api: Any, kube_node: Any, kube_namespace: str, minio_bucket: Any,
         trainforge_crd: Any, tmp_path: Path, node_images: dict[str, str]) -> Iterator[Harness]:
    from dataclasses import replace

    h = Harness(kube, kube_api, kube_namespace, minio_bucket, tmp_path)
    h.settings = replace(h.settings, stager_image=node_images["stager"], host_network=True,
                         checkpoint_sync_seconds=2)
    h.catalog(REAL_NODE_CATALOG)
    h.start()
    yield h
    h.stop()


def upload_digits(h: Harness, tmp_path: Path) -> dict[str, str]:
    s3 = h.bucket.s3_client()
    uris = {}
    for channel, folder in write_digits_dataset(tmp_path / "digits").items():
        for path in Path(folder).iterdir():
            s3.upload_file(str(path), h.bucket.name, f"data/{channel}/{path.name}")
        uris[channel] = h.bucket.uri(f"data/{channel}/")
    return uris


def conditions(status: dict[str, Any]) -> list[str]:
    return [c["type"] for c in status.get("conditions") or [] if c.get("status") == "True"]


def test_digits_trains_on_real_pods_end_to_end(real: Harness, node_images: dict[str, str], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    h = real
    for key, value in h.bucket.env().items():  # the user's own store credentials (download_model)
        monkeypatch.setenv(key, value)
    inputs = upload_digits(h, tmp_path)
    submitted = time.monotonic()
    h.submit("digits", image=node_images["digits-pytorch"], instance={"type": "real-cpu"},
             hyperparameters={"epochs": "3"}, metrics=DIGITS_METRICS,
             inputs=[{"channel": c, "uri": u} for c, u in inputs.items()],
             checkpoints={"uri": h.bucket.uri("ckpt/digits/")})
    backend = KubernetesBackend(h.store_settings, namespace=h.ns, kubeconfig=str(h.kube.kubeconfig),
                                output=h.bucket.uri("jobs/"))

    # the trainer's own lines, through the apiserver and the real kubelet, while the pod lives
    first = wait_until(lambda: [line for line in backend.logs("digits") if line.startswith("training on")],
                       timeout=240, what="the trainer's first line", watch=h.kube.processes)
    first_line_seconds = time.monotonic() - submitted
    assert "host algo-1, attempt 1" in first[0]

    status = h.wait_phase("digits", "Completed", timeout=300)["status"]
    print(f"submit -> first trainer line {first_line_seconds:.1f} s; "
          f"submit -> Completed {time.monotonic() - submitted:.1f} s")
    assert [t for t in conditions(status) if t in ("Staging", "Training", "Uploading", "Completed")][-1] == "Completed"
    assert 0.8 < status["finalMetrics"]["validation:accuracy"] <= 1.0
    assert status["attempts"] == 1

    # what the sidecar uploaded: model, metrics, logs; the checkpoints it synced
    model = Job("digits", backend).download_model(tmp_path / "model")
    assert sorted(p.name for p in model.iterdir()) == ["model.json", "model.pt"]
    assert json.loads((model / "model.json").read_text())["epochs"] == 3
    assert [r.step for r in backend.metrics("digits") if r.name == "validation:accuracy"] == [1, 2, 3]
    keys = sorted(o["Key"] for o in h.bucket.s3_client().list_objects_v2(
        Bucket=h.bucket.name, Prefix="ckpt/digits/").get("Contents", []))
    # The trainer keeps its last two; a sync while epoch 1 was still there uploaded it
    # too (a sync adds and replaces, never deletes), so it may be there.
    assert keys[-2:] == ["ckpt/digits/epoch-0002.pt", "ckpt/digits/epoch-0003.pt"]
    assert set(keys) <= {"ckpt/digits/epoch-0001.pt", "ckpt/digits/epoch-0002.pt", "ckpt/digits/epoch-0003.pt"}

    # the pod ran hardened: non-root, no token; logs survive its deletion (from the archive)
    [pod] = h.pods("digits-a1")
    assert pod.spec.node_name == "127.0.0.1" and pod.spec.automount_service_account_token is False
    live = list(backend.logs("digits"))
    h.core.delete_namespaced_pod(pod.metadata.name, h.ns, grace_period_seconds=0)
    wait_until(lambda: not h.pods("digits-a1"), timeout=60, what="the pod to be deleted")
    archived = list(backend.logs("digits"))
    assert "done: final validation accuracy" in "\n".join(archived)
    assert [line for line in live if line.startswith("epoch=")] == \
           [line for line in archived if line.startswith("epoch=")]


def test_failure_file_is_the_failure_reason_on_real_pods(real: Harness, node_images: dict[str, str],
                                                         tmp_path: Path) -> None:
    h = real
    inputs = upload_digits(h, tmp_path)
    # fail_at_epoch raises inside the trainer: the runtime writes the failure file,
    # the kubelet makes it the termination message, the controller the reason.
    h.submit("broken", image=node_images["digits-pytorch"], instance={"type": "real-cpu"},
             hyperparameters={"epochs": "3", "fail_at_epoch": "2"},
             inputs=[{"channel": c, "uri": u} for c, u in inputs.items()])
    status = h.wait_phase("broken", "Failed", timeout=300)["status"]
    assert "simulated failure at epoch 2" in status["failureReason"]
    [pod] = h.pods("broken-a1")
    trainer = next(s for s in pod.status.container_statuses if s.name == "trainer")
    assert trainer.state.terminated.exit_code != 0
    assert "simulated failure at epoch 2" in trainer.state.terminated.message
    assert isinstance(pod, client.V1Pod)


def test_two_host_ddp_job_on_real_pods(real: Harness, node_images: dict[str, str], tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Two pods, one rank each: the torchrun variables the builder sets (MASTER_ADDR
    the first pod's name under the headless Service, NODE_RANK from the completion
    index) are enough for DDP; both ranks hold the same weights after every epoch."""
    h = real
    for key, value in h.bucket.env().items():
        monkeypatch.setenv(key, value)
    inputs = upload_digits(h, tmp_path)
    h.submit("ddp", image=node_images["digits-pytorch"], instance={"type": "real-half", "count": 2},
             hyperparameters={"epochs": "2"}, metrics=DIGITS_METRICS,
             inputs=[{"channel": c, "uri": u} for c, u in inputs.items()])
    status = h.wait_phase("ddp", "Completed", timeout=400)["status"]
    pods = sorted(h.pods("ddp-a1"), key=lambda p: p.metadata.labels["batch.kubernetes.io/job-completion-index"])
    assert len(pods) == 2
    logs = [h.core.read_namespaced_pod_log(p.metadata.name, h.ns, container="trainer") for p in pods]
    checksums = []
    for rank, text in enumerate(logs):
        assert f"ddp: rank {rank} of 2 joined (master ddp-a1-0.ddp:29500)" in text
        assert f"host algo-{rank + 1}, attempt 1" in text
        checksums.append([line.rsplit("=", 1)[1] for line in text.splitlines() if line.startswith("ddp rank=")])
    assert len(checksums[0]) == 2 and checksums[0] == checksums[1]  # gradients all-reduced
    assert 0.8 < status["finalMetrics"]["validation:accuracy"] <= 1.0
    model = Job("ddp", KubernetesBackend(h.store_settings, namespace=h.ns, kubeconfig=str(h.kube.kubeconfig),
                                         output=h.bucket.uri("jobs/"))).download_model(tmp_path / "model")
    assert sorted(p.name for p in model.iterdir()) == ["model.json", "model.pt"]


def test_a_trainer_killed_mid_training_is_retried_and_resumes(real: Harness, kube_node: Any,
                                                              node_images: dict[str, str], tmp_path: Path) -> None:
    h = real
    inputs = upload_digits(h, tmp_path)
    h.submit("killed", image=node_images["digits-pytorch"], instance={"type": "real-cpu"},
             hyperparameters={"epochs": "4", "sleep_per_epoch": "3"}, retry={"maxAttempts": 2},
             inputs=[{"channel": c, "uri": u} for c, u in inputs.items()],
             checkpoints={"uri": h.bucket.uri("ckpt/killed/")})
    s3 = h.bucket.s3_client()
    wait_until(lambda: "ckpt/killed/epoch-0002.pt" in [o["Key"] for o in s3.list_objects_v2(
        Bucket=h.bucket.name, Prefix="ckpt/killed/").get("Contents", [])],
        timeout=240, what="the sidecar to sync epoch 2's checkpoint")
    [pod] = h.pods("killed-a1")
    trainer = next(s for s in pod.status.container_statuses if s.name == "trainer")
    # SIGKILL the trainer's process through containerd, as the OOM killer would
    subprocess.run(kube_node.ctr_command("tasks", "kill", "-s", "SIGKILL", trainer.container_id.split("//")[1]),
                   check=True, capture_output=True)
    status = h.wait_phase("killed", "Completed", timeout=300)["status"]
    assert status["attempts"] == 2
    second = h.core.read_namespaced_pod_log(h.pods("killed-a2")[0].metadata.name, h.ns, container="trainer")
    assert "resumed from checkpoint epoch=" in second and "attempt 2" in second
    resumed = int(second.split("resumed from checkpoint epoch=")[1].split()[0])
    assert resumed >= 2 and f"epoch={resumed + 1} " in second and "epoch=1 " not in second


def test_stop_sends_sigterm_and_the_final_checkpoint_is_uploaded(real: Harness, node_images: dict[str, str],
                                                                 tmp_path: Path) -> None:
    h = real
    inputs = upload_digits(h, tmp_path)
    h.submit("stopped", image=node_images["digits-pytorch"], instance={"type": "real-cpu"},
             hyperparameters={"epochs": "50", "sleep_per_epoch": "5"},
             inputs=[{"channel": c, "uri": u} for c, u in inputs.items()],
             checkpoints={"uri": h.bucket.uri("ckpt/stopped/")})
    backend = KubernetesBackend(h.store_settings, namespace=h.ns, kubeconfig=str(h.kube.kubeconfig),
                                output=h.bucket.uri("jobs/"))
    seen: list[str] = []

    def trained_an_epoch() -> bool:
        seen[:] = list(backend.logs("stopped"))
        return any(line.startswith("epoch=1 ") for line in seen)

    wait_until(trained_an_epoch, timeout=240, what="epoch 1")
    backend.stop("stopped")

    # The pod's log is read while it lives, from the stop on: the trainer ends within a
    # second or two of SIGTERM and the suspended Job's pod goes with it (a pod deleted by
    # the suspension is not archived), so waiting for Stopped first could miss it.
    def pod_gone() -> bool:
        pods = h.pods("stopped-a1")
        if pods:
            try:
                text = h.core.read_namespaced_pod_log(pods[0].metadata.name, h.ns, container="trainer")
            except client.ApiException:
                return False
            # Kept, not replaced: a read can meet a later container of the pod (or none).
            seen.extend(line for line in text.splitlines() if line not in seen)
        return not pods

    wait_until(pod_gone, timeout=120, interval=0.1, what="the stopped pod to end")
    status = h.wait_phase("stopped", "Stopped", timeout=240)["status"]
    # Stopped came after the stage-out, and the stopped pod's log was archived like a finished one's
    assert all(p.status.phase in ("Succeeded", "Failed") for p in h.pods("stopped-a1"))
    assert status["attemptHistory"][0]["outcome"] == "Stopped"
    assert "epoch=1 " in archived_log(h, "stopped", 1)
    lines = seen
    epochs = [int(line.split()[0].split("=")[1]) for line in lines if line.startswith("epoch=")]
    assert epochs, lines[-20:]
    last = max(epochs)
    assert last < 50 and any(line.startswith("stopped by SIGTERM") or "SIGTERM" in line for line in lines)
    keys = [o["Key"] for o in h.bucket.s3_client().list_objects_v2(
        Bucket=h.bucket.name, Prefix="ckpt/stopped/").get("Contents", [])]
    # SIGTERM ended the sleep at once; the trainer checkpointed its last epoch and the
    # sidecar uploaded it while the pod terminated (sync interval or not)
    assert f"ckpt/stopped/epoch-{last:04d}.pt" in keys, (keys, last, status.get("failureReason"))


def archived_log(h: Harness, job: str, attempt: int) -> str:
    body = h.bucket.s3_client().get_object(Bucket=h.bucket.name,
                                           Key=f"jobs/{h.ns}/{job}/logs/algo-1-attempt-{attempt}.log")["Body"]
    return str(body.read().decode())


def _cordon(h: Harness, node: str, on: bool) -> None:
    h.core.patch_node(node, {"spec": {"unschedulable": on}})


def test_a_drained_node_preempts_the_attempt_which_resumes_outside_the_retry_budget(
        real: Harness, kube_node: Any, node_images: dict[str, str], tmp_path: Path) -> None:
    """kubectl drain's two steps on the real node — cordon, then the Eviction API —
    mid-training. retry.maxAttempts=1 leaves no budget for a failure: the job
    completes anyway, as attempt 2 resumed from the checkpoint the evicted pod's
    stage-out uploaded, and no second counts the time it waited for the node."""
    h = real
    inputs = upload_digits(h, tmp_path)
    h.submit("drained", image=node_images["digits-pytorch"], instance={"type": "real-cpu"},
             hyperparameters={"epochs": "5", "sleep_per_epoch": "3"}, retry={"maxAttempts": 1},
             inputs=[{"channel": c, "uri": u} for c, u in inputs.items()],
             checkpoints={"uri": h.bucket.uri("ckpt/drained/")})
    s3 = h.bucket.s3_client()
    wait_until(lambda: "ckpt/drained/epoch-0002.pt" in [o["Key"] for o in s3.list_objects_v2(
        Bucket=h.bucket.name, Prefix="ckpt/drained/").get("Contents", [])],
        timeout=240, what="the sidecar to sync epoch 2's checkpoint")
    [pod] = h.pods("drained-a1")
    node = pod.spec.node_name
    _cordon(h, node, True)
    try:
        h.core.create_namespaced_pod_eviction(pod.metadata.name, h.ns, client.V1Eviction(
            metadata=client.V1ObjectMeta(name=pod.metadata.name, namespace=h.ns)))
        # attempt 2 waits for a node: the drained one is cordoned
        queued = h.wait_phase("drained", "Queued", timeout=180)["status"]
        assert queued["attempts"] == 2 and h.jobs("drained") == ["drained-a1", "drained-a2"]
        first = queued["attemptHistory"][0]
        assert first["outcome"] == "Preempted" and "EvictionByEvictionAPI" in first["reason"], first
        wait_until(lambda: h.get("drained")["status"].get("billableSeconds", 0) >= first["billableSeconds"]
                   and any(e.reason == "Preempted" for e in h.core.list_namespaced_event(h.ns).items),
                   timeout=30, what="the Preempted event")
    finally:
        _cordon(h, node, False)
    uncordoned = time.time()
    status = h.wait_phase("drained", "Completed", timeout=300)["status"]

    history = status["attemptHistory"]
    assert [(r["attempt"], r["outcome"]) for r in history] == [(1, "Preempted"), (2, "Completed")]
    assert status["attempts"] == 2 and "failureReason" not in status
    # billable: the attempts' own seconds, each from its pod's start, none while queued
    assert status["billableSeconds"] == sum(r["billableSeconds"] for r in history)
    start2 = datetime.fromisoformat(history[1]["startTime"].replace("Z", "+00:00")).timestamp()
    assert start2 >= int(uncordoned) - 1
    for r in history:
        ran = (datetime.fromisoformat(r["endTime"].replace("Z", "+00:00"))
               - datetime.fromisoformat(r["startTime"].replace("Z", "+00:00"))).total_seconds()
        assert 0 < r["billableSeconds"] <= ran + 1, r

    # the evicted pod's log was archived (read as its deletion began); attempt 2 went on
    assert "epoch=2 " in archived_log(h, "drained", 1)
    second = archived_log(h, "drained", 2)
    resumed = int(second.split("resumed from checkpoint epoch=")[1].split()[0])
    assert resumed >= 2 and "epoch=1 " not in second and "epoch=5 " in second


def test_max_runtime_sends_sigterm_and_the_final_checkpoint_is_uploaded(
        real: Harness, node_images: dict[str, str], tmp_path: Path) -> None:
    """The attempt Job's activeDeadlineSeconds is spec.stopping.maxRuntimeSeconds:
    the Job controller deletes the pod, the trainer gets SIGTERM and checkpoints,
    the sidecar uploads it, and only then is the verdict written (with the log
    archived, though the pod is gone)."""
    h = real
    inputs = upload_digits(h, tmp_path)
    h.submit("deadline", image=node_images["digits-pytorch"], instance={"type": "real-cpu"},
             hyperparameters={"epochs": "50", "sleep_per_epoch": "4"}, stopping={"maxRuntimeSeconds": 40},
             inputs=[{"channel": c, "uri": u} for c, u in inputs.items()],
             checkpoints={"uri": h.bucket.uri("ckpt/deadline/")})
    status = h.wait_phase("deadline", "Failed", timeout=240)["status"]
    assert status["failureReason"].startswith("MaxRuntimeExceeded"), status
    [record] = status["attemptHistory"]
    assert record["outcome"] == "Stopped" and record["reason"].startswith("MaxRuntimeExceeded")
    assert not h.pods("deadline-a1"), "the verdict came before the pod (and its stage-out) ended"
    log = archived_log(h, "deadline", 1)
    epochs = [int(line.split()[0].split("=")[1]) for line in log.splitlines() if line.startswith("epoch=")]
    assert epochs and "SIGTERM" in log, log[-2000:]
    keys = [o["Key"] for o in h.bucket.s3_client().list_objects_v2(
        Bucket=h.bucket.name, Prefix="ckpt/deadline/").get("Contents", [])]
    assert f"ckpt/deadline/epoch-{max(epochs):04d}.pt" in keys, (keys, epochs)


def test_the_sagemaker_compat_example_runs_unchanged_on_a_real_pod(
        real: Harness, node_images: dict[str, str], tmp_path: Path) -> None:
    h = real
    h.bucket.s3_client().put_object(Bucket=h.bucket.name, Key="tables/train/part-0.csv",
                                    Body=b"x,y\n1,2\n2,4\n3,9\n")
    h.submit("smcompat", image=node_images["sagemaker-compat"], instance={"type": "real-half"},
             inputs=[{"channel": "train", "uri": h.bucket.uri("tables/train/")}],
             metrics=[{"name": "mean", "regex": "mean=([0-9.]+)"}, {"name": "rows", "regex": r"rows=(\d+)"}])
    status = h.wait_phase("smcompat", "Completed", timeout=180)["status"]
    assert status["finalMetrics"] == {"mean": pytest.approx(5.0), "rows": 3.0}
    assert "host algo-1 of ['algo-1']; channels ['train']" in archived_log(h, "smcompat", 1)
    model = tmp_path / "model.tar.gz"
    h.bucket.s3_client().download_file(h.bucket.name, f"jobs/{h.ns}/smcompat/output/model.tar.gz", str(model))
    with tarfile.open(model) as tar:
        assert json.load(tar.extractfile("model.json"))["mean"] == pytest.approx(5.0)  # type: ignore[arg-type]
