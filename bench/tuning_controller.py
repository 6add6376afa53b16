"""The TuningJob reconciler at scale; prints numbers, asserts nothing.

A real control plane (tests/infra/kube_cluster.py) with ``--nodes`` fake nodes
x 8 GPUs, MinIO, and the controller as a subprocess. One TuningJob of
``--trials`` trials, ``--parallel`` at a time, each trial a TrainingJob on
``--instance`` (gpu-4x: 64 trials fill 32 nodes x 8 GPUs). kwok runs the pods
but never ends them (its ``pod-complete`` stage is left out); this script plays
the trainer and its kubelet: ``--trial-seconds`` after a trial's pod runs, it
writes the trial's metrics.jsonl into MinIO (what the stager uploads) and marks
the pod Succeeded. Measured:

- trial ended -> next trial created: from the moment a pod is marked Succeeded
  to the ADDED event of the trial that takes its slot (the k-th ending frees
  the slot of trial ``parallel + k``), p50/p99/max. The TuningJob reconciler
  frees a slot when the trial's pods Succeeded, so the stages printed below it
  (ended -> Job Complete -> trial Completed, the Job controller and the
  TrainingJob reconciler, which reads the trial's results from the store) are
  no longer on that path: they show what it no longer waits for;
- GPU occupancy: GPUs held by running trial pods / GPUs in the cluster,
  sampled every 0.25 s, between the first slot filled and the last trial created;
- the whole tuning job's wall time, and the controller's CPU seconds.

    .venv/bin/python bench/tuning_controller.py [--trials 1000 --parallel 64]
    .venv/bin/python bench/tuning_controller.py --trials 200            # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.infra: the control plane, MinIO, fake nodes
sys.path.insert(0, str(Path(__file__).resolve().parent))

from controller_scale import (  # noqa: E402 - after the path
    CRD_DIR, ProcessStats, kwok_stages_without_pod_complete, percentile,
)

NAMESPACE = "bench"
GROUP, VERSION = "trainforge.dev", "v1alpha1"
TUNING = "hpo"
METRIC = "val:acc"
GPU = "nvidia.com/gpu"


class Observer:
    """Two raw watches: trials (ADDED time, when their status first said
    Completed) and pods (when each went Running, GPUs held)."""

    def __init__(self, api: Any):
        self.api = api
        self.created: dict[str, float] = {}
        self.completed: dict[str, float] = {}
        self.job_complete: dict[str, float] = {}  # trial -> its Job's Complete condition seen
        self.running: dict[str, tuple[float, int, str]] = {}  # pod -> (since, GPUs, trial)
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def start(self) -> Observer:
        for target in (self._trials, self._pods, self._jobs):
            threading.Thread(target=target, daemon=True).start()
        return self

    def _stream(self, what: str, call: Any, args: tuple[Any, ...], handle: Any) -> None:
        version = None
        while not self.stop.is_set():
            try:
                if version is None:
                    listing = json.loads(call(*args, limit=1, _preload_content=False).data)
                    version = listing["metadata"]["resourceVersion"]
                response = call(*args, watch=True, resource_version=version, timeout_seconds=60,
                                allow_watch_bookmarks=True, _preload_content=False)
                for line in response:
                    now = time.time()
                    event = json.loads(line)
                    version = event["object"]["metadata"].get("resourceVersion") or version
                    if event["type"] != "BOOKMARK":
                        handle(event, now)
            except Exception as exc:  # noqa: BLE001 - a benchmark's watch: say so and re-list
                if self.stop.is_set():
                    return
                print(f"  (watch of {what} restarts: {exc})", flush=True)
                version = None
                time.sleep(0.5)

    def _trials(self) -> None:
        def handle(event: dict[str, Any], now: float) -> None:
            obj = event["object"]
            name = obj["metadata"]["name"]
            with self.lock:
                self.created.setdefault(name, now)
                if (obj.get("status") or {}).get("phase") == "Completed":
                    self.completed.setdefault(name, now)
        from kubernetes import client

        self._stream("trials", client.CustomObjectsApi(self.api).list_namespaced_custom_object,
                     (GROUP, VERSION, NAMESPACE, "trainingjobs"), handle)

    def _jobs(self) -> None:
        from kubernetes import client

        def handle(event: dict[str, Any], now: float) -> None:
            job = event["object"]
            trial = (job["metadata"].get("labels") or {}).get("trainforge.dev/job-name", "")
            if any(c.get("type") == "Complete" and c.get("status") == "True"
                   for c in (job.get("status") or {}).get("conditions") or []):
                with self.lock:
                    self.job_complete.setdefault(trial, now)
        self._stream("jobs", client.BatchV1Api(self.api).list_namespaced_job, (NAMESPACE,), handle)

    def _pods(self) -> None:
        def handle(event: dict[str, Any], now: float) -> None:
            pod = event["object"]
            name = pod["metadata"]["name"]
            phase = (pod.get("status") or {}).get("phase")
            with self.lock:
                if event["type"] != "DELETED" and phase == "Running" and pod["spec"].get("nodeName"):
                    if name not in self.running:
                        gpus = sum(int(((c.get("resources") or {}).get("requests") or {}).get(GPU, 0))
                                   for c in pod["spec"]["containers"])
                        trial = pod["metadata"]["labels"].get("trainforge.dev/job-name", "")
                        self.running[name] = (now, gpus, trial)
                else:
                    self.running.pop(name, None)
        from kubernetes import client

        self._stream("pods", client.CoreV1Api(self.api).list_namespaced_pod, (NAMESPACE,), handle)

    def gpus_held(self) -> int:
        with self.lock:
            return sum(g for _, g, _ in self.running.values())


def play_trainers(api: Any, observer: Observer, store: Any, output: str, trial_seconds: float,
                  ended: dict[str, float], stop: threading.Event, threads: int = 8) -> None:
    """Every pod running for ``trial_seconds``: its metrics into the store (as
    the stager uploads them), then the pod Succeeded (as a kubelet reports)."""
    from trainforge_controller.wire import Wire, core_path

    wire = Wire(api)
    rng = random.Random(1)
    pool = ThreadPoolExecutor(threads)
    inflight: set[str] = set()

    def finish(pod: str, trial: str) -> None:
        uri = f"{output}{NAMESPACE}/{trial}/metrics/metrics.jsonl"
        value = rng.random()
        store.write_bytes(uri, "".join(json.dumps({"name": METRIC, "value": value * s / 3, "step": s,
                                                   "timestamp": time.time()}) + "\n" for s in (1, 2, 3)).encode())
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        body = {"status": {"phase": "Succeeded", "containerStatuses": [{
            "name": "trainer", "image": "registry.example.com/bench:1", "imageID": "", "ready": False,
            "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                                                        "startedAt": now, "finishedAt": now}}}]}}
        ended[trial] = time.time()
        wire.merge_patch(core_path(NAMESPACE, "pods", pod) + "/status", body)

    while not stop.wait(0.05):
        now = time.time()
        with observer.lock:
            due = [(pod, trial) for pod, (since, _, trial) in observer.running.items()
                   if now - since >= trial_seconds and pod not in inflight]
        for pod, trial in due:
            inflight.add(pod)
            pool.submit(finish, pod, trial)
    pool.shutdown(wait=False, cancel_futures=True)


def tuning_body(args: argparse.Namespace, output: str) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TuningJob", "metadata": {"name": TUNING},
            "spec": {
                "trainingJobTemplate": {"image": "registry.example.com/bench:1", "instance": {"type": args.instance},
                                        "output": {"uri": output},
                                        "metrics": [{"name": METRIC, "regex": "val_acc=([0-9.]+)"}]},
                "objective": {"metric": METRIC, "type": "Maximize"},
                "parameters": [{"name": "lr", "type": "Continuous", "min": 1e-4, "max": 1e-1, "scale": "Log"},
                               {"name": "batch_size", "type": "Integer", "min": 16, "max": 256, "step": 16}],
                "strategy": {"type": args.strategy, "seed": 1},
                "limits": {"maxTrials": args.trials, "maxParallelTrials": args.parallel,
                           "maxFailedTrials": args.trials},
            }}


def run(args: argparse.Namespace) -> None:
    from kubernetes import client

    from tests.infra.kube_cluster import start_kube_cluster
    from tests.infra.minio_server import start_minio
    from tests.infra.ports import free_port
    from tests.infra.waiting import wait_until
    from trainforge.config import S3Settings, Settings
    from trainforge.storage import open_store

    work = Path(tempfile.mkdtemp(prefix="trainforge-bench-tuning-"))
    print(f"run dir {work}", flush=True)
    t0 = time.monotonic()
    minio = start_minio(work / "run" / "minio", work / "logs")
    cluster = start_kube_cluster(work / "run", work / "logs", gpu_nodes=args.nodes, gpus_per_node=8, cpu_nodes=0,
                                 stages=kwok_stages_without_pod_complete(work / "stages.yaml"), timeout=300)
    controller: subprocess.Popen[bytes] | None = None
    observer: Observer | None = None
    stop = threading.Event()
    try:
        print(f"control plane + {args.nodes} nodes x 8 GPUs + MinIO ready in {time.monotonic() - t0:.0f} s",
              flush=True)
        cluster.kubectl("apply", "--server-side", "-f", str(CRD_DIR))
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/trainingjobs.trainforge.dev",
                        "crd/tuningjobs.trainforge.dev")
        s3 = {"AWS_ACCESS_KEY_ID": minio.access_key, "AWS_SECRET_ACCESS_KEY": minio.secret_key,
              "AWS_ENDPOINT_URL": minio.endpoint, "AWS_DEFAULT_REGION": minio.region}
        output = "s3://bench/jobs/"
        store = open_store(output, Settings(home=work / "home", s3=S3Settings(
            endpoint_url=minio.endpoint, access_key_id=minio.access_key, secret_access_key=minio.secret_key,
            region=minio.region)))
        store.ensure_bucket(output)
        api = cluster.api_client()
        core = client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": NAMESPACE}})
        wait_until(lambda: core.read_namespaced_service_account("default", NAMESPACE), timeout=60,
                   what="the bench namespace's service account")
        env = {**cluster.env(), **s3, "TRAINFORGE_DEFAULT_OUTPUT": output, "TRAINFORGE_STS": "off",
               "PYTHONPATH": os.pathsep.join([str(REPO / "sdk"), str(REPO / "controller")])}
        if args.status_seconds is not None:
            env["TRAINFORGE_TUNING_STATUS_SECONDS"] = str(args.status_seconds)
        with open(work / "logs" / "controller.log", "wb") as log:
            controller = subprocess.Popen(
                [sys.executable, "-m", "trainforge_controller.main", "--namespace", NAMESPACE,
                 "--metrics-port", str(free_port()), "--no-leader-election", "--trace"],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        proc = ProcessStats(controller.pid)
        time.sleep(3)  # the watches open
        observer = Observer(api).start()
        time.sleep(1)
        ended: dict[str, float] = {}
        threading.Thread(target=play_trainers, args=(api, observer, store, output, args.trial_seconds, ended, stop),
                         daemon=True).start()
        capacity = args.nodes * 8
        samples: list[tuple[float, int]] = []
        cpu0 = proc.cpu_seconds()
        load0 = os.getloadavg()
        t_submit = time.time()
        client.CustomObjectsApi(api).create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "tuningjobs",
                                                                     tuning_body(args, output))

        def phase() -> str:
            obj = client.CustomObjectsApi(api).get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "tuningjobs",
                                                                            TUNING)
            return (obj.get("status") or {}).get("phase", "")

        deadline = time.monotonic() + args.timeout
        last_print = 0.0
        while time.monotonic() < deadline:
            samples.append((time.time(), observer.gpus_held()))
            if time.monotonic() - last_print > 10:
                last_print = time.monotonic()
                print(f"  {time.time() - t_submit:5.0f} s: {len(observer.created)} trials created, "
                      f"{len(ended)} ended, GPUs held {samples[-1][1]}/{capacity}", flush=True)
                if phase() in ("Completed", "Failed", "Stopped"):
                    break
            time.sleep(0.25)
        t_done = time.time()
        cpu = proc.cpu_seconds() - cpu0
        final = client.CustomObjectsApi(api).get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "tuningjobs",
                                                                          TUNING).get("status") or {}

        names = [f"{TUNING}-{i:03d}" for i in range(args.trials)]
        order = sorted(names, key=lambda n: observer.created.get(n, float("inf")))
        ends = sorted((t, n) for n, t in ended.items())
        to_next, to_completed, completed_to_next = [], [], []
        to_job = [observer.job_complete[n] - t for t, n in ends if n in observer.job_complete]
        job_to_completed = [observer.completed[n] - observer.job_complete[n] for n in ended
                            if n in observer.completed and n in observer.job_complete]
        traces = controller_traces(work / "logs" / "controller.log")
        to_queued, queued_to_taken, taken_to_done = [], [], []
        stages: dict[str, list[float]] = {}
        for entry in {id(e): e for e in traces.values()}.values():
            for stage, seconds in (entry.get("stages") or {}).items():
                stages.setdefault(stage, []).append(seconds)
        for k, (t_end, trial) in enumerate(ends):
            successor = args.parallel + k
            if successor >= len(order) or order[successor] not in observer.created:
                break
            t_next = observer.created[order[successor]]
            to_next.append(t_next - t_end)
            line_of = traces.get(order[successor])
            if line_of is not None:
                to_queued.append(max(0.0, line_of["queued"] - t_end))
                queued_to_taken.append(line_of["taken"] - max(line_of["queued"], t_end))
                taken_to_done.append(line_of["done"] - line_of["taken"])
            if trial in observer.completed:
                to_completed.append(observer.completed[trial] - t_end)
        for t_end, trial in ends:
            if trial in observer.completed:
                after = [t for t in observer.created.values() if t >= observer.completed[trial]]
                if after:
                    completed_to_next.append(min(after) - observer.completed[trial])
        first_full = next((t for t, g in samples if g >= min(capacity, args.parallel * gpus_per_trial(args))), None)
        last_created = max(observer.created.values(), default=t_done)
        window = [g for t, g in samples if first_full is not None and first_full <= t <= last_created]
        whole = [g for t, g in samples if t_submit <= t <= t_done]

        def line(label: str, values: list[float]) -> str:
            if not values:
                return f"{label}: no samples"
            return (f"{label}: p50 {statistics.median(values) * 1000:.0f} ms  "
                    f"p99 {percentile(values, 99) * 1000:.0f} ms  max {max(values) * 1000:.0f} ms  "
                    f"({len(values)} trials)")

        print()
        print(f"== one TuningJob: {args.trials} trials, {args.parallel} in parallel, {args.instance} each, "
              f"on {args.nodes} nodes x 8 GPUs; strategy {args.strategy}; each trial runs {args.trial_seconds:g} s; "
              f"status writes held {'(default)' if args.status_seconds is None else f'{args.status_seconds:g} s'} ==")
        print(f"tuning job {final.get('phase')} in {t_done - t_submit:.0f} s: {final.get('trials')}; "
              f"best {final.get('bestTrial', {}).get('name')} = {final.get('bestTrial', {}).get('objective')}")
        load1 = os.getloadavg()
        print(f"load average (1/5/15 min) at submit: {load0[0]:.1f}/{load0[1]:.1f}/{load0[2]:.1f}, "
              f"at the end: {load1[0]:.1f}/{load1[1]:.1f}/{load1[2]:.1f}")
        expected = {f"{TUNING}-{i:03d}" for i in range(min(args.trials, len(observer.created)))}
        print(f"trials created: {len(observer.created)}, named {TUNING}-000 on without a gap: "
              f"{'yes' if set(observer.created) == expected else 'NO'}")
        print(line("trial ended -> next trial created", to_next))
        print(line("  of which ended -> its TuningJob queued (pod watch event reaches the controller)", to_queued))
        print(line("  of which queued -> a worker takes it (queue wait, its own previous pass included)", queued_to_taken))
        print(line("  of which the TuningJob pass (observe, plan, create, status write)", taken_to_done))
        for stage, values in stages.items():
            print(line(f"    stage {stage} of a pass that created trials", values).replace("trials)", "passes)"))
        print(line("  of which ended -> trial status Completed", to_completed))
        print(line("    ended -> its Job Complete (kube Job controller)", to_job))
        print(line("    Job Complete -> trial status Completed (TrainingJob reconciler, reads results)",
                   job_to_completed))
        print(line("  of which Completed -> next trial created (TuningJob pass)", completed_to_next))
        if window:
            print(f"GPU occupancy while trials queue (first slot filled -> last trial created): "
                  f"{100 * statistics.mean(window) / capacity:.1f}% (ideal with {args.trial_seconds:g} s trials: "
                  f"{100 * min(capacity, args.parallel * gpus_per_trial(args)) / capacity:.0f}%)")
        print(f"GPU occupancy over the whole tuning job: {100 * statistics.mean(whole) / capacity:.1f}%")
        print(f"controller CPU: {cpu:.0f} s for {args.trials} trials ({1000 * cpu / max(1, args.trials):.0f} ms per "
              f"trial); RSS {proc.rss_mib():.0f} MiB, peak {proc.peak_rss_mib():.0f} MiB")
    finally:
        stop.set()
        if observer is not None:
            observer.stop.set()
        if controller is not None:
            controller.terminate()
            try:
                controller.wait(15)
            except subprocess.TimeoutExpired:
                controller.kill()
        cluster.stop()
        minio.stop()
        print(f"logs in {work / 'logs'}")


def controller_traces(path: Path) -> dict[str, dict[str, float]]:
    """Trial name -> the controller's trace line of the pass that created it."""
    out: dict[str, dict[str, float]] = {}
    for raw in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(json.loads(raw)["msg"])
        except (ValueError, KeyError, TypeError):
            continue
        if isinstance(entry, dict) and entry.get("trace") == "created":
            for child in entry["children"]:
                out[child] = entry
    return out


def gpus_per_trial(args: argparse.Namespace) -> int:
    return int(args.instance.removeprefix("gpu-").removesuffix("x"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--parallel", type=int, default=64)
    parser.add_argument("--nodes", type=int, default=32)
    parser.add_argument("--instance", default="gpu-4x", help="gpu-<n>x of the built-in catalog")
    parser.add_argument("--strategy", default="Random", choices=["Random", "Bayesian"])
    parser.add_argument("--trial-seconds", type=float, default=5.0, help="how long each trial's pod runs")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--status-seconds", type=float, default=None,
                        help="the controller's TRAINFORGE_TUNING_STATUS_SECONDS (0: every status write at once)")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
