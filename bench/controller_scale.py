"""Controller at scale; prints numbers, asserts nothing.

A real control plane (tests/infra/kube_cluster.py: etcd, kube-apiserver,
controller-manager, scheduler, kwok) with 32 fake nodes x 8 GPUs, the
committed CRD, and the controller as a subprocess
(``python -m trainforge_controller.main``) so its CPU time, RSS, threads and
sockets can be read from /proc. Then:

1. ``--jobs`` one-GPU TrainingJobs submitted at once (parallel creates):
   submit -> batch Job latency (client clock before the create call -> the
   Job's ADDED event on a watch held by this script), TrainingJobs per second
   (jobs / (last Job seen - first submit)), reconcile passes per second (the
   controller's own Prometheus counter), GPUs allocated (GPU requests of pods
   bound to a node) while the rest wait Queued, controller CPU and peak RSS,
   and its threads and TCP connections at 0 jobs and at ``--jobs`` (a
   controller with per-pod log streams would hold one connection per pod).
2. More TrainingJobs, created ``spec.suspend: true`` (their Jobs are created
   suspended, so no pods) while the controller is paused (SIGSTOP), until
   ``--big`` are in the cluster; then it is resumed: how fast it works off
   that backlog (TrainingJobs/s bounded by neither the submitters nor the
   arrival rate), its RSS and CPU once settled, and the latency of a few
   probe jobs with ``--big`` in the cluster.

kwok runs pods with the stages from tests/infra/kwok-stages.yaml less
``pod-complete``: pods stay Running and hold their GPUs, as training would.

    .venv/bin/python bench/controller_scale.py [--jobs 1000 --big 10000]
    .venv/bin/python bench/controller_scale.py --jobs 100 --big 1000   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CRD_DIR = REPO / "k8s" / "crds"  # every kind: the controller watches them all
NAMESPACE = "bench"
GROUP, VERSION, PLURAL = "trainforge.dev", "v1alpha1", "trainingjobs"
GPU = "nvidia.com/gpu"
CLK_TCK = os.sysconf("SC_CLK_TCK")

sys.path.insert(0, str(REPO))  # tests.infra: the control plane and fake nodes


# -- the controller process, seen through /proc ----------------------------------
class ProcessStats:
    def __init__(self, pid: int):
        self.pid = pid

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime

    def _status(self, key: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        return 0

    def rss_mib(self) -> float:
        return self._status("VmRSS") / 1024

    def peak_rss_mib(self) -> float:
        return self._status("VmHWM") / 1024

    def threads(self) -> int:
        return self._status("Threads")

    def tcp_connections(self, port: int) -> int:
        """Established TCP connections of this process to ``port`` (the apiserver)."""
        inodes = set()
        for fd in Path(f"/proc/{self.pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        count = 0
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                remote_port = int(cols[2].rsplit(":", 1)[1], 16)
                if cols[3] == "01" and remote_port == port and cols[9] in inodes:  # 01: ESTABLISHED
                    count += 1
        return count


def reconcile_passes(metrics_url: str) -> float:
    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    return sum(float(m.group(1)) for m in re.finditer(r'^trainforge_reconciles_total\{[^}]*\} (\S+)$', text, re.M))


def apiserver_requests(api: Any) -> dict[str, float]:
    """The apiserver's own request counter, summed per "verb resource[/subresource]"."""
    response = api.call_api("GET", api.configuration.host + "/metrics")
    response.read()
    counts: dict[str, float] = {}
    pattern = r'^apiserver_request_(total|duration_seconds_sum)\{([^}]*)\} (\S+)$'
    for m in re.finditer(pattern, response.data.decode(), re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
        what = labels.get("resource", "") + (f"/{labels['subresource']}" if labels.get("subresource") else "")
        key = f"{labels.get('verb', '?')} {what or '(non-resource)'}"
        if m.group(1) != "total":
            key = "seconds " + key  # time the apiserver spent serving them
        counts[key] = counts.get(key, 0.0) + float(m.group(3))
    return counts


def serving_ms(before: dict[str, float], after: dict[str, float], *kinds: str) -> str:
    """Mean apiserver time per request of each kind between two readings."""
    out = []
    for kind in kinds:
        n = after.get(kind, 0.0) - before.get(kind, 0.0)
        seconds = after.get(f"seconds {kind}", 0.0) - before.get(f"seconds {kind}", 0.0)
        out.append(f"{kind} {1000 * seconds / n:.0f} ms" if n else f"{kind} -")
    return "apiserver time per request: " + ", ".join(out)


def request_mix(before: dict[str, float], after: dict[str, float], per: int, top: int = 12) -> str:
    """The busiest kinds of apiserver request between two readings, per job."""
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    busiest = sorted(((v, k) for k, v in delta.items() if v > 0 and not k.startswith("seconds ")),
                     reverse=True)[:top]
    total = sum(v for k, v in delta.items() if v > 0 and not k.startswith("seconds "))
    return (f"apiserver requests: {total:.0f} ({total / per:.1f} per job); busiest: "
            + ", ".join(f"{k} {v / per:.2f}" for v, k in busiest))


# -- what this script watches ------------------------------------------------------
class JobWatch:
    """When each batch Job was first seen (wall clock), from a raw watch (no models)."""

    def __init__(self, api: Any):
        from kubernetes import client

        self.batch = client.BatchV1Api(api)
        self.seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> JobWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        version = self.batch.list_namespaced_job(NAMESPACE, limit=1).metadata.resource_version
        while not self._stop.is_set():
            try:
                response = self.batch.list_namespaced_job(
                    NAMESPACE, watch=True, resource_version=version, timeout_seconds=60,
                    allow_watch_bookmarks=True, _preload_content=False)
                for line in response:
                    now = time.time()
                    event = json.loads(line)
                    meta = event["object"]["metadata"]
                    version = meta["resourceVersion"]
                    if event["type"] == "ADDED":
                        self.seen.setdefault(meta["name"], now)
            except Exception as exc:  # noqa: BLE001 - a benchmark's watch: say so and re-list
                if self._stop.is_set():
                    return  # the cluster is going away at the end of the run
                print(f"  (job watch restarts: {exc})", flush=True)
                try:
                    version = self.batch.list_namespaced_job(NAMESPACE, limit=1).metadata.resource_version
                except Exception:  # noqa: BLE001
                    time.sleep(1)

    def wait_for(self, names: Iterable[str], timeout: float) -> bool:
        wanted = list(names)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(n in self.seen for n in wanted):
                return True
            time.sleep(0.2)
        return False


def submit(api: Any, names: list[str], suspend: bool, threads: int) -> dict[str, float]:
    """Create the TrainingJobs in parallel; the wall clock just before each create.
    Plain JSON POSTs (as kubectl or a Go client sends them): the generated
    client's per-call validation would spend the two cores the system under
    test needs."""
    from trainforge_controller.wire import Wire, group_path

    wire = Wire(api)
    path = group_path(f"{GROUP}/{VERSION}", NAMESPACE, PLURAL)
    started: dict[str, float] = {}

    def create(name: str) -> None:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingJob",
                "metadata": {"name": name},
                "spec": {"image": "registry.example.com/bench:1", "instance": {"type": "gpu-1x", "count": 1},
                         "suspend": suspend}}
        started[name] = time.time()
        wire.create(path, body)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(create, names))
    return started


def phases(api: Any) -> dict[str, int]:
    from kubernetes import client

    custom = client.CustomObjectsApi(api)
    counts: dict[str, int] = {}
    token = None
    while True:
        page = custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, limit=500,
                                                    _continue=token)
        for item in page["items"]:
            phase = (item.get("status") or {}).get("phase") or "(none)"
            counts[phase] = counts.get(phase, 0) + 1
        token = page["metadata"].get("continue")
        if not token:
            return counts


def gpus_allocated(api: Any) -> tuple[int, int]:
    """(GPUs requested by pods bound to a node and not finished, pods waiting unbound)."""
    from kubernetes import client

    pods = json.loads(client.CoreV1Api(api).list_namespaced_pod(NAMESPACE, _preload_content=False).data)
    busy = waiting = 0
    for pod in pods["items"]:
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        if not pod["spec"].get("nodeName"):
            waiting += 1
            continue
        for c in pod["spec"]["containers"]:
            busy += int(((c.get("resources") or {}).get("requests") or {}).get(GPU, 0))
    return busy, waiting


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def latency_line(label: str, started: dict[str, float], seen: dict[str, float]) -> str:
    lat = [seen[f"{n}-a1"] - t for n, t in started.items() if f"{n}-a1" in seen]
    if not lat:
        return f"{label}: no Job seen"
    return (f"{label}: p50 {statistics.median(lat):.2f} s  p99 {percentile(lat, 99):.2f} s  "
            f"max {max(lat):.2f} s  ({len(lat)}/{len(started)} Jobs)")


def kwok_stages_without_pod_complete(target: Path) -> Path:
    from tests.infra.kube_cluster import KWOK_STAGES

    docs = KWOK_STAGES.read_text().split("\n---\n")
    target.write_text("\n---\n".join(d for d in docs if "name: pod-complete" not in d))
    return target


def run(args: argparse.Namespace) -> None:
    from kubernetes import client

    from tests.infra.kube_cluster import start_kube_cluster
    from tests.infra.ports import free_port
    from tests.infra.waiting import wait_until

    work = Path(tempfile.mkdtemp(prefix="trainforge-bench-scale-"))
    print(f"run dir {work}", flush=True)
    t0 = time.monotonic()
    cluster = start_kube_cluster(work / "run", work / "logs", gpu_nodes=args.nodes,
                                 gpus_per_node=args.gpus_per_node, cpu_nodes=0,
                                 stages=kwok_stages_without_pod_complete(work / "stages.yaml"), timeout=300)
    controller: subprocess.Popen[bytes] | None = None
    try:
        print(f"control plane + {args.nodes} nodes x {args.gpus_per_node} GPUs ready in "
              f"{time.monotonic() - t0:.0f} s", flush=True)
        cluster.kubectl("apply", "--server-side", "-f", str(CRD_DIR))
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/trainingjobs.trainforge.dev",
                        "crd/tuningjobs.trainforge.dev")
        api = cluster.api_client()
        api.configuration.connection_pool_maxsize = args.create_threads + 4
        api.rest_client = client.rest.RESTClientObject(api.configuration)  # the bigger pool
        core = client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": NAMESPACE}})
        wait_until(lambda: core.read_namespaced_service_account("default", NAMESPACE), timeout=60,
                   what="the bench namespace's service account")

        metrics_port = free_port()
        log_path = work / "logs" / "controller.log"
        with open(log_path, "wb") as log:
            controller = subprocess.Popen(
                [sys.executable, "-m", "trainforge_controller.main", "--namespace", NAMESPACE,
                 "--metrics-port", str(metrics_port), "--no-leader-election", "--workers", str(args.workers)],
                env=cluster.env(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        wait_until(lambda: reconcile_passes(metrics_url) >= 0, timeout=60, what="the controller's metrics")
        proc = ProcessStats(controller.pid)
        api_port = int(cluster.server.rsplit(":", 1)[1])
        time.sleep(3)  # let the watches open
        idle = (proc.threads(), proc.tcp_connections(api_port), proc.rss_mib())
        print(f"controller pid {controller.pid}, idle: {idle[0]} threads, {idle[1]} connections to the "
              f"apiserver, RSS {idle[2]:.0f} MiB", flush=True)

        # -- 1. --jobs one-GPU jobs at once -------------------------------------------------
        watcher = JobWatch(api).start()
        names = [f"tj-{i:05d}" for i in range(args.jobs)]
        cpu0, passes0 = proc.cpu_seconds(), reconcile_passes(metrics_url)
        requests0 = apiserver_requests(api)
        t_submit = time.time()
        started = submit(api, names, suspend=False, threads=args.create_threads)
        t_submitted = time.time()
        done = watcher.wait_for((f"{n}-a1" for n in names), timeout=args.timeout)
        last = max((watcher.seen[f"{n}-a1"] for n in names if f"{n}-a1" in watcher.seen), default=t_submit)
        cpu1, passes1 = proc.cpu_seconds(), reconcile_passes(metrics_url)
        requests1 = apiserver_requests(api)
        window = last - t_submit
        capacity = args.nodes * args.gpus_per_node
        busy_target = min(capacity, args.jobs)
        try:
            wait_until(lambda: gpus_allocated(api)[0] >= busy_target and
                       phases(api).get("Queued", 0) >= args.jobs - busy_target,
                       timeout=args.timeout, what="GPUs full and the rest Queued")
        except AssertionError as exc:
            print(f"  (steady state not reached: {exc})")
        busy, unbound = gpus_allocated(api)
        counts = phases(api)
        at_jobs = (proc.threads(), proc.tcp_connections(api_port), proc.rss_mib())
        cpu2, passes2 = proc.cpu_seconds(), reconcile_passes(metrics_url)
        requests2 = apiserver_requests(api)
        print()
        print(f"== {args.jobs} one-GPU TrainingJobs submitted at once ({args.create_threads} threads; "
              f"creates took {t_submitted - t_submit:.1f} s) ==")
        print(f"Jobs created: {len([n for n in names if f'{n}-a1' in watcher.seen])}/{args.jobs}"
              f"{'' if done else ' (timed out)'}")
        print(latency_line("submit -> Job", started, watcher.seen))
        print(f"TrainingJobs reconciled per second: {args.jobs / window:.1f}/s "
              f"({args.jobs} first Jobs in {window:.1f} s)")
        print(f"reconcile passes: {passes1 - passes0:.0f} in that window ({(passes1 - passes0) / window:.1f}/s); "
              f"{passes2 - passes0:.0f} until steady state")
        print(request_mix(requests0, requests1, args.jobs) + " (until the last Job)")
        print(serving_ms(requests0, requests1, "POST trainingjobs", "POST jobs"))
        print(f"GPUs allocated: {busy}/{capacity}; pods waiting for a node: {unbound}; "
              f"TrainingJob phases: {dict(sorted(counts.items()))}")
        print(request_mix(requests0, requests2, args.jobs) + " (until steady state)")
        print(f"controller CPU: {cpu1 - cpu0:.1f} s until the last Job, {cpu2 - cpu0:.1f} s until steady state; "
              f"RSS {at_jobs[2]:.0f} MiB, peak {proc.peak_rss_mib():.0f} MiB")
        print(f"controller threads: {idle[0]} idle -> {at_jobs[0]} at {args.jobs} jobs; "
              f"TCP connections to the apiserver: {idle[1]} -> {at_jobs[1]}")
        steady0, spass0 = proc.cpu_seconds(), reconcile_passes(metrics_url)
        time.sleep(args.settle)
        print(f"steady state over {args.settle:.0f} s: controller CPU {(proc.cpu_seconds() - steady0) / args.settle:.2f} "
              f"cores, {(reconcile_passes(metrics_url) - spass0) / args.settle:.1f} reconcile passes/s", flush=True)

        # -- 2. up to --big TrainingJobs (the rest suspended), a backlog ----------------------
        # The controller is paused (SIGSTOP) while they are submitted, then resumed:
        # how fast it works off a backlog, bounded by neither the submitters nor a
        # single pass (a controller restarting into a full queue does the same).
        more = [f"tj-{i:05d}" for i in range(args.jobs, args.big)]
        os.kill(controller.pid, signal.SIGSTOP)
        t_big = time.time()
        submit(api, more, suspend=True, threads=args.create_threads)
        t_big_submitted = time.time()
        requests_a = apiserver_requests(api)
        t_resumed = time.time()
        os.kill(controller.pid, signal.SIGCONT)
        done = watcher.wait_for((f"{n}-a1" for n in more), timeout=args.big_timeout)
        last = max((watcher.seen[f"{n}-a1"] for n in more if f"{n}-a1" in watcher.seen), default=t_resumed)
        requests_b = apiserver_requests(api)
        print()
        print(f"== {len(more)} more, suspended, up to {args.big} TrainingJobs, submitted while the controller "
              f"was paused (creates took {t_big_submitted - t_big:.1f} s) ==")
        print(f"backlog worked off: {len([n for n in more if f'{n}-a1' in watcher.seen])}/{len(more)} Jobs"
              f"{'' if done else ' (timed out)'} in {last - t_resumed:.1f} s after resuming: "
              f"{len(more) / max(0.001, last - t_resumed):.1f} TrainingJobs/s")
        print(serving_ms(requests_a, requests_b, "POST jobs"))
        # Their first statuses come after every Job (the urgent lane); settled means written.
        try:
            wait_until(lambda: phases(api).get("Queued", 0) >= args.big - busy_target, timeout=args.big_timeout,
                       interval=2.0, what="every waiting TrainingJob to be Queued")
            print(f"every status written {time.time() - t_resumed:.1f} s after resuming")
        except AssertionError as exc:
            print(f"  (statuses not all written: {exc})")
        cpu_a, pass_a = proc.cpu_seconds(), reconcile_passes(metrics_url)
        time.sleep(args.settle)
        cpu_b, pass_b = proc.cpu_seconds(), reconcile_passes(metrics_url)
        probes = [f"probe-{i}" for i in range(10)]
        probe_started = submit(api, probes, suspend=True, threads=4)
        watcher.wait_for((f"{n}-a1" for n in probes), timeout=120)
        print(latency_line(f"probe submit -> Job with {args.big} in the cluster", probe_started, watcher.seen))
        print(f"settled over {args.settle:.0f} s: controller CPU {(cpu_b - cpu_a) / args.settle:.2f} cores, "
              f"{(pass_b - pass_a) / args.settle:.1f} reconcile passes/s")
        print(f"controller at {args.big} TrainingJobs: RSS {proc.rss_mib():.0f} MiB, peak {proc.peak_rss_mib():.0f} MiB, "
              f"{proc.threads()} threads, {proc.tcp_connections(api_port)} connections to the apiserver, "
              f"CPU {proc.cpu_seconds():.0f} s in all")
        watcher.stop()
    finally:
        if controller is not None:
            controller.terminate()
            try:
                controller.wait(15)
            except subprocess.TimeoutExpired:
                controller.kill()
        cluster.stop()
        print(f"logs in {work / 'logs'}")


def main() -> None:
    from trainforge_controller.main import DEFAULT_WORKERS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000, help="one-GPU jobs submitted at once")
    parser.add_argument("--big", type=int, default=10000, help="TrainingJobs in the cluster for the RSS reading")
    parser.add_argument("--nodes", type=int, default=32)
    parser.add_argument("--gpus-per-node", type=int, default=8)
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="the controller's --workers")
    parser.add_argument("--create-threads", type=int, default=16)
    parser.add_argument("--settle", type=float, default=30.0, help="seconds of steady state to measure")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--big-timeout", type=float, default=1800.0)
    args = parser.parse_args()
    args.big = max(args.big, args.jobs)
    run(args)


if __name__ == "__main__":
    main()
