"""Kueue admission as quota frees; prints numbers, asserts nothing.

A real control plane with kwok GPU nodes (tests/infra/kube_cluster.py; pods
stay Running and hold their GPUs: the ``pod-complete`` stage is left out), the
real Kueue (tests/infra/kueue_server.py) and the trainforge controller
(a subprocess, ``TRAINFORGE_KUEUE=true``). A ClusterQueue with ``--quota`` GPUs,
a LocalQueue, and ``--jobs`` one-GPU jobs queued in it; ``--quota`` are
admitted at once, the rest wait. Then, round after round, the script finishes
``--batch`` admitted jobs (their pods Succeeded, as a kubelet reports a
trainer that exited 0) and waits for as many new admissions:

- admission latency: quota freed (the pod status write that ends a job) ->
  the next Job seen unsuspended on a watch (Job controller: Complete; Kueue:
  Workload finished, quota released, next Workload admitted, Job resumed);
- throughput: admissions per second from the first freeing to the last;
- for TrainingJobs, Job resumed -> TrainingJob status no longer Queued (the
  controller reflecting Kueue's decision).

Baseline, in the same run and cluster: the same number of plain batch Jobs
queued in the same LocalQueue without trainforge (Kueue alone), so the ratio
says what trainforge's controller adds to the admission path.

    .venv/bin/python bench/kueue_admission.py [--jobs 100 --quota 8 --batch 4]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for path in (REPO, REPO / "sdk", REPO / "controller"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

KUEUE = ("kueue.x-k8s.io", "v1beta2")
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
CATALOG = """
- name: gpu-1x
  cpus: 4
  memory_gib: 16
  gpus: 1
  tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
"""


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


class JobWatch:
    """When each Job of a namespace was first seen resumed (spec.suspend false)."""

    def __init__(self, api: Any, namespace: str):
        from kubernetes import client

        self.batch = client.BatchV1Api(api)
        self.ns = namespace
        self.resumed: dict[str, float] = {}
        self.completed: dict[str, float] = {}  # when its Complete condition was first seen
        self.lock = threading.Condition()
        self.stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        from kubernetes import watch

        while not self.stop.is_set():
            w = watch.Watch()
            try:
                for event in w.stream(self.batch.list_namespaced_job, self.ns, timeout_seconds=10):
                    job = event["object"]
                    name = job.metadata.name
                    if job.spec.suspend is False and name not in self.resumed:
                        with self.lock:
                            self.resumed[name] = time.monotonic()
                            self.lock.notify_all()
                    done = any(c.type == "Complete" and c.status == "True"
                               for c in (job.status and job.status.conditions) or [])
                    if done and name not in self.completed:
                        self.completed[name] = time.monotonic()
                    if self.stop.is_set():
                        w.stop()
            except Exception:  # noqa: BLE001 - the cluster going away at the end
                self.stop.wait(1)

    def wait_count(self, n: int, timeout: float) -> bool:
        with self.lock:
            return self.lock.wait_for(lambda: len(self.resumed) >= n, timeout)


class StatusWatch:
    """When each TrainingJob's status first left Queued (after it was Queued)."""

    def __init__(self, api: Any, namespace: str):
        from kubernetes import client

        self.custom = client.CustomObjectsApi(api)
        self.ns = namespace
        self.queued: set[str] = set()
        self.left: dict[str, float] = {}
        self.stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        from kubernetes import watch

        from trainforge_controller import GROUP, PLURAL, VERSION

        while not self.stop.is_set():
            w = watch.Watch()
            try:
                for event in w.stream(self.custom.list_namespaced_custom_object, GROUP, VERSION, self.ns, PLURAL,
                                      timeout_seconds=10):
                    obj = event["object"]
                    name, phase = obj["metadata"]["name"], (obj.get("status") or {}).get("phase")
                    if phase == "Queued":
                        self.queued.add(name)
                    elif phase and name in self.queued and name not in self.left:
                        self.left[name] = time.monotonic()
                    if self.stop.is_set():
                        w.stop()
            except Exception:  # noqa: BLE001 - the cluster going away at the end
                self.stop.wait(1)


def queues(custom: Any, namespace: str, quota: int) -> None:
    def obj(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": "/".join(KUEUE), "kind": kind, "metadata": {"name": name}, "spec": spec}

    name = f"cq-{namespace}"
    custom.create_cluster_custom_object(*KUEUE, "resourceflavors", obj("ResourceFlavor", name, {}))
    custom.create_cluster_custom_object(*KUEUE, "clusterqueues", obj("ClusterQueue", name, {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
        "resourceGroups": [{"coveredResources": ["cpu", "memory", "nvidia.com/gpu"], "flavors": [{
            "name": name, "resources": [{"name": "cpu", "nominalQuota": "100000"},
                                        {"name": "memory", "nominalQuota": "1000Ti"},
                                        {"name": "nvidia.com/gpu", "nominalQuota": str(quota)}]}]}]}))
    custom.create_namespaced_custom_object(*KUEUE, namespace, "localqueues",
                                           obj("LocalQueue", "team", {"clusterQueue": name}))


def plain_job(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {QUEUE_LABEL: "team"}}, "spec": {
        "suspend": True, "completions": 1, "parallelism": 1, "completionMode": "Indexed", "backoffLimit": 0,
        "template": {"spec": {"restartPolicy": "Never", "tolerations": [GPU_TOLERATION], "containers": [{
            "name": "trainer", "image": "registry.example.com/train:1",
            "resources": {"requests": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"},
                          "limits": {"nvidia.com/gpu": "1"}}}]}}}}


def finish(core: Any, namespace: str, job: str, timeout: float = 60) -> float:
    """End a Job's pod as a kubelet reports a trainer that exited 0; the time of that write."""
    deadline = time.monotonic() + timeout
    while True:
        pods = core.list_namespaced_pod(namespace, label_selector=f"job-name={job}").items
        running = [p for p in pods if p.status.phase == "Running"]
        if running:
            break
        if time.monotonic() > deadline:
            seen = [(p.metadata.name, p.status.phase, p.status.conditions) for p in pods]
            raise TimeoutError(f"no running pod for Job {job}: {seen}")
        time.sleep(0.05)
    freed = time.monotonic()
    for pod in running:
        core.patch_namespaced_pod_status(pod.metadata.name, namespace, {"status": {
            "phase": "Succeeded", "containerStatuses": [{
                "name": c.name, "image": c.image, "imageID": "", "ready": False, "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                                         "startedAt": "2026-01-01T00:00:00Z",
                                         "finishedAt": "2026-01-01T00:00:01Z"}}} for c in pod.spec.containers]}})
    return freed


def drain(api: Any, namespace: str, jobs: list[str], quota: int,
          batch: int) -> tuple[list[float], float, dict[str, float], list[float]]:
    """Free ``batch`` GPUs at a time until every job was admitted: the
    admission latencies, admissions per second over the whole drain, when
    each Job was seen resumed, and pod Succeeded -> Job Complete of each
    finished Job (Kubernetes' Job controller, before Kueue can release)."""
    from kubernetes import client

    core = client.CoreV1Api(api)
    watcher = JobWatch(api, namespace)
    if not watcher.wait_count(min(quota, len(jobs)), 120):
        raise TimeoutError(f"only {len(watcher.resumed)} of the first {quota} jobs were admitted")
    latencies: list[float] = []
    freed_at: dict[str, float] = {}
    finished: set[str] = set()
    first = None
    admitted = len(watcher.resumed)
    while admitted < len(jobs):
        with watcher.lock:
            running = [n for n in sorted(watcher.resumed, key=watcher.resumed.__getitem__) if n not in finished]
        round_jobs = running[:batch]
        freed = [finish(core, namespace, job) for job in round_jobs]
        freed_at.update(zip(round_jobs, freed))
        finished.update(round_jobs)
        first = first or freed[0]
        want = min(len(jobs), admitted + len(round_jobs))
        if not watcher.wait_count(want, 120):
            raise TimeoutError(f"{want - len(watcher.resumed)} admissions missing after freeing {round_jobs}")
        with watcher.lock:
            new = sorted(watcher.resumed.values())[admitted:want]
        latencies += [t - freed[min(i, len(freed) - 1)] for i, t in enumerate(new)]
        admitted = want
    with watcher.lock:
        last = max(watcher.resumed.values())
    watcher.stop.set()
    completing = [watcher.completed[j] - t for j, t in freed_at.items() if j in watcher.completed]
    rate = (len(jobs) - min(quota, len(jobs))) / max(1e-9, last - (first or last))
    return latencies, rate, dict(watcher.resumed), completing


def line(label: str, latencies: list[float], rate: float, completing: list[float]) -> str:
    split = (f"; of it, pod Succeeded -> Job Complete p50 {statistics.median(completing) * 1000:.0f} ms"
             if completing else "")
    return (f"{label}: admission latency p50 {statistics.median(latencies) * 1000:.0f} ms  "
            f"p99 {percentile(latencies, 99) * 1000:.0f} ms  max {max(latencies) * 1000:.0f} ms  "
            f"({len(latencies)} admissions); {rate:.1f} admissions/s{split}")


def run(args: argparse.Namespace) -> None:
    from kubernetes import client

    from tests.infra.binaries import versions
    from tests.infra.kube_cluster import KWOK_STAGES, start_kube_cluster
    from tests.infra.kueue_server import start_kueue
    from trainforge_controller import GROUP, PLURAL, VERSION

    work = Path(tempfile.mkdtemp(prefix="trainforge-bench-kueue-"))
    stages = work / "stages.yaml"
    stages.write_text("\n---\n".join(d for d in KWOK_STAGES.read_text().split("\n---\n")
                                     if "name: pod-complete" not in d))
    # Room for both runs: the baseline's last admitted pods keep their GPUs.
    nodes = 2 * max(1, -(-args.quota // 8))
    cluster = start_kube_cluster(work / "run", work / "logs", gpu_nodes=nodes, cpu_nodes=0, stages=stages,
                                 timeout=300)
    kueue = None
    controller: subprocess.Popen[bytes] | None = None
    finished = False
    try:
        kueue = start_kueue(cluster, work / "run" / "kueue", work / "logs", timeout=300)
        cluster.kubectl("apply", "--server-side", "-f", str(REPO / "k8s" / "crds"))
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/trainingjobs.trainforge.dev")
        api = cluster.api_client()
        core, batch, custom = client.CoreV1Api(api), client.BatchV1Api(api), client.CustomObjectsApi(api)
        print(f"Kueue {versions()['KUEUE_VERSION']}, {args.jobs} one-GPU jobs, quota {args.quota} GPUs, "
              f"freed {args.batch} at a time", flush=True)

        # Baseline: plain Jobs, Kueue alone.
        core.create_namespace({"metadata": {"name": "plain"}})
        queues(custom, "plain", args.quota)
        names = [f"plain-{i:03d}" for i in range(args.jobs)]
        for name in names:
            batch.create_namespaced_job("plain", plain_job(name))
        plain, plain_rate, _, completing = drain(api, "plain", names, args.quota, args.batch)
        print(line("plain Jobs (Kueue alone)", plain, plain_rate, completing), flush=True)

        # TrainingJobs through the trainforge controller.
        ns = "tf"
        core.create_namespace({"metadata": {"name": ns}})
        queues(custom, ns, args.quota)
        core.create_namespaced_config_map(ns, {"metadata": {"name": "trainforge-instances"},
                                               "data": {"instances.yaml": CATALOG}})
        # Its own process (as deployed): in this one it would share the GIL
        # with the watches that take the times.
        env = {**cluster.env(), "PYTHONPATH": os.pathsep.join(str(REPO / p) for p in ("sdk", "controller", "")),
               "TRAINFORGE_KUEUE": "true", "TRAINFORGE_CATALOG_NAMESPACE": ns, "TRAINFORGE_STS": "off",
               "TRAINFORGE_DEFAULT_OUTPUT": "s3://bench/jobs/", "LOG_LEVEL": "ERROR"}
        with open(work / "logs" / "controller.log", "wb") as log:
            controller = subprocess.Popen(
                [sys.executable, "-m", "trainforge_controller.main", "--namespace", ns, "--metrics-port", "0",
                 "--no-leader-election"], env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        statuses = StatusWatch(api, ns)
        jobs = [f"tj-{i:03d}" for i in range(args.jobs)]
        for name in jobs:
            custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, {
                "apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingJob",
                "metadata": {"name": name, "labels": {QUEUE_LABEL: "team"}},
                "spec": {"image": "registry.example.com/train:1", "instance": {"type": "gpu-1x"}}})
        watcher_names = [f"{n}-a1" for n in jobs]
        tf, tf_rate, resumed, completing = drain(api, ns, watcher_names, args.quota, args.batch)
        print(line("TrainingJobs (trainforge + Kueue)", tf, tf_rate, completing), flush=True)
        print(f"ratio TrainingJobs / plain Jobs: p50 {statistics.median(tf) / statistics.median(plain):.2f}x  "
              f"throughput {tf_rate / plain_rate:.2f}x", flush=True)
        time.sleep(2)  # the last status writes
        waits = [statuses.left[n] - resumed[f"{n}-a1"] for n in jobs if n in statuses.left and f"{n}-a1" in resumed]
        if waits:
            print(f"Job resumed -> TrainingJob no longer Queued: p50 {statistics.median(waits) * 1000:.0f} ms  "
                  f"p99 {percentile(waits, 99) * 1000:.0f} ms ({len(waits)} jobs)", flush=True)
        statuses.stop.set()
        finished = True
    finally:
        if controller is not None:
            controller.terminate()
            controller.wait(30)
        if kueue is not None:
            kueue.stop()
        cluster.stop()
        if finished:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"logs kept in {work / 'logs'}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--quota", type=int, default=8, help="GPUs in the ClusterQueue")
    parser.add_argument("--batch", type=int, default=4, help="jobs finished at once per round")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
