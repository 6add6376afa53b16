"""The controller process: watches -> a work queue -> reconcile, with resync,
Lease leader election, a Prometheus endpoint and JSON logs.

    python -m trainforge_controller.main [--metrics-port 8080] [--namespace NS]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from kubernetes import client, config, watch
from trainforge.uris import redact_userinfo

from trainforge.names import (
    GROUP, JOB_NAME_LABEL, MANAGED_BY, TRAINING_KIND, TRAINING_PLURAL, TUNING_JOB_LABEL, TUNING_KIND, TUNING_PLURAL,
    VERSION,
)

from .cache import (
    KUEUE_GROUP, KUEUE_VERSION, WORKLOAD_KIND, Cache, job_mark, pod_mark, training_job_mark, trial_mark, workload_job,
    workload_mark,
)
from .errors import RetryableError
from .leader import LeaderElector
from .reconciler import Reconciler
from .settings import ControllerSettings
from .tuning import CREATE_PARALLELISM, TuningReconciler
from .workqueue import WorkQueue

log = logging.getLogger("trainforge.controller")
# Timing lines for benchmarks and latency hunts; off unless --trace.
trace = logging.getLogger("trainforge.controller.trace")

try:  # optional: the metrics endpoint needs prometheus_client
    from prometheus_client import Counter, Histogram, start_http_server

    RECONCILES = Counter("trainforge_reconciles_total", "reconcile passes", ["result"])
    RECONCILE_SECONDS = Histogram("trainforge_reconcile_seconds", "time per reconcile pass")
except ImportError:  # pragma: no cover
    RECONCILES = RECONCILE_SECONDS = None  # type: ignore[assignment]
    start_http_server = None  # type: ignore[assignment]

# A work item: (kind, namespace, name). One queue for every reconciler, so one
# pool of workers serves them all and a key is never reconciled twice at once.
Key = tuple[str, str, str]
Obj = dict[str, Any]
# Reconcile passes at once. A pass mostly waits on the apiserver (a Job create
# is ~40 ms of its time under load), so threads, not cores, bound how fast a
# burst of submissions gets its Jobs (bench/controller_scale.py).
DEFAULT_WORKERS = 16
# Workers that serve only TuningJob keys (the others serve them first too): a
# tuning pass never waits behind a backlog of TrainingJob passes.
DEFAULT_TUNING_WORKERS = 2
MISSING_KIND_RETRY_SECONDS = 30


class Reconciles(Protocol):
    def reconcile(self, namespace: str, name: str) -> Any: ...


@dataclass(frozen=True)
class Handler:
    """Which reconciler an object's change concerns: ``owner`` names the key
    to queue (or None), queued only when ``mark`` (the fields that reconciler
    reads) changes or the object goes; ahead of the rest when ``urgent``."""

    mark: Callable[[Obj], str]
    owner: Callable[[Obj], Key | None]
    urgent: Callable[[Obj], bool] = lambda obj: False


@dataclass(frozen=True)
class Informer:
    """One LIST+WATCH of a kind into its store in the cache."""

    kind: str
    call: Callable[..., Any]
    args: tuple[Any, ...]
    handlers: tuple[Handler, ...]
    label_selector: str | None = None


def _self(kind: str) -> Callable[[Obj], Key]:
    return lambda obj: (kind, obj["metadata"]["namespace"], obj["metadata"]["name"])


def _by_label(kind: str, label: str) -> Callable[[Obj], Key | None]:
    def owner(obj: Obj) -> Key | None:
        meta = obj["metadata"]
        value = (meta.get("labels") or {}).get(label)
        return (kind, meta["namespace"], value) if value else None
    return owner


def _pod_succeeded(obj: Obj) -> bool:
    return (obj.get("status") or {}).get("phase") == "Succeeded"


def _pod_end_mark(obj: Obj) -> str:
    return str(_pod_succeeded(obj))


def _trial_ended(obj: Obj) -> bool:
    """A trial that just ended leaves room for the next: that wait is what
    the GPUs feel, so it goes ahead of follow-up passes."""
    return (obj.get("status") or {}).get("phase") in ("Completed", "Failed", "Stopped")


class Controller:
    """The manager: informers fill one cache and queue keys; workers hand each
    key to the reconciler of its kind."""

    def __init__(self, api: client.ApiClient, settings: ControllerSettings | None = None,
                 namespace: str | None = None, workers: int = DEFAULT_WORKERS, watch_seconds: int = 30,
                 tuning_workers: int = DEFAULT_TUNING_WORKERS, **reconciler_options: Any):
        self.api = api
        self.settings = settings or ControllerSettings()
        self.namespace = namespace
        self.cache = Cache(kueue=self.settings.kueue)
        self.reconciler = Reconciler(api, self.settings, cache=self.cache, **reconciler_options)
        self.tuning = TuningReconciler(api, self.settings, self.cache, self.reconciler.credentials,
                                       self.reconciler._event, clock=self.reconciler.clock)
        self.reconcilers: dict[str, Reconciles] = {TRAINING_KIND: self.reconciler, TUNING_KIND: self.tuning}
        self.queue: WorkQueue[Key] = WorkQueue(first=lambda key: key[0] == TUNING_KIND)
        self.workers = workers
        self.tuning_workers = tuning_workers
        self.watch_seconds = watch_seconds  # how long a stop may wait on an open watch
        self.reconciles = 0

    # -- sources of keys, and the cache ------------------------------------------
    def _custom(self, plural: str) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        custom = client.CustomObjectsApi(self.api)
        if self.namespace:
            return custom.list_namespaced_custom_object, (GROUP, VERSION, self.namespace, plural)
        return custom.list_cluster_custom_object, (GROUP, VERSION, plural)

    def _core(self, api: Any, kind: str) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        if self.namespace:
            return getattr(api, f"list_namespaced_{kind}"), (self.namespace,)
        return getattr(api, f"list_{kind}_for_all_namespaces"), ()

    def _tuning_of_pod(self, pod: Obj) -> Key | None:
        """The TuningJob whose trial ``pod`` runs (through the trial in the cache)."""
        meta = pod["metadata"]
        trial = (meta.get("labels") or {}).get(JOB_NAME_LABEL)
        raw = self.cache.training_jobs.get(meta["namespace"], trial) if trial else None
        tuning = ((raw or {}).get("metadata", {}).get("labels") or {}).get(TUNING_JOB_LABEL)
        return (TUNING_KIND, meta["namespace"], tuning) if tuning else None

    def _workload_owner(self, obj: Obj) -> Key | None:
        """A Workload concerns the TrainingJob of its Job (one of ours, else none)."""
        job_name = workload_job(obj)
        job = self.cache.jobs.get(obj["metadata"]["namespace"], job_name) if job_name else None
        owner = ((job or {}).get("metadata", {}).get("labels") or {}).get(JOB_NAME_LABEL)
        return (TRAINING_KIND, obj["metadata"]["namespace"], owner) if owner else None

    def informers(self) -> list[Informer]:
        managed = ",".join(f"{k}={v}" for k, v in MANAGED_BY.items())
        to_training_job = _by_label(TRAINING_KIND, JOB_NAME_LABEL)
        kueue = []
        if self.settings.kueue:
            # Kueue's Workloads carry no label of ours, so every one is watched (trimmed).
            custom = client.CustomObjectsApi(self.api)
            where = (self.namespace,) if self.namespace else ()
            call = custom.list_namespaced_custom_object if self.namespace else custom.list_cluster_custom_object
            args = (KUEUE_GROUP, KUEUE_VERSION, *where, "workloads")
            kueue.append(Informer(WORKLOAD_KIND, call, args, (Handler(workload_mark, self._workload_owner),)))
        # Status-only changes queue nothing: the controller's own write would
        # otherwise queue the job again, and a running job's billable seconds
        # would change on every pass, for ever (controller-runtime's
        # Generation/Annotation/LabelChanged predicates).
        # A job without a status has never been reconciled: it waits for its
        # first Job, so it goes ahead of every follow-up pass.
        return [
            # A trial's phase change concerns its tuning job too (room for the next trial).
            Informer(TRAINING_KIND, *self._custom(TRAINING_PLURAL), (
                Handler(training_job_mark, _self(TRAINING_KIND), urgent=lambda obj: not obj.get("status")),
                Handler(trial_mark, _by_label(TUNING_KIND, TUNING_JOB_LABEL), urgent=_trial_ended))),
            Informer(TUNING_KIND, *self._custom(TUNING_PLURAL), (
                Handler(training_job_mark, _self(TUNING_KIND), urgent=lambda obj: not obj.get("status")),)),
            Informer("Job", *self._core(client.BatchV1Api(self.api), "job"),
                     (Handler(job_mark, to_training_job),), label_selector=managed),
            # A trial's pods ending free its GPUs: its tuning job hears of it at
            # once, not after the Job controller and the trial's own pass.
            Informer("Pod", *self._core(client.CoreV1Api(self.api), "pod"),
                     (Handler(pod_mark, to_training_job),
                      Handler(_pod_end_mark, self._tuning_of_pod, urgent=_pod_succeeded)),
                     label_selector=managed),
            *kueue,
        ]

    def _watch(self, stop: threading.Event, informer: Informer) -> None:
        """An informer: LIST into its store, then watch from the list's
        resourceVersion, keeping the store current (a watch ending every
        ``watch_seconds`` resumes where it was; 410 Gone or an error re-lists).
        Each handler queues its owner of an object only when its ``mark``
        changes (or the object goes). Plain dicts, no client models."""
        store = self.cache.store(informer.kind)
        call, args = informer.call, informer.args
        kwargs = {"label_selector": informer.label_selector} if informer.label_selector else {}
        version: str | None = None
        # per handler, per object: its mark and its owner
        marks: list[dict[tuple[str, str], tuple[str, Key | None]]] = [{} for _ in informer.handlers]

        def changed(obj: Obj, gone: bool = False) -> None:
            meta = obj.get("metadata") or {}
            if "namespace" not in meta:
                return
            key = (meta["namespace"], meta["name"])
            for handler, held_marks in zip(informer.handlers, marks):
                if gone:
                    held = held_marks.pop(key, None)
                    target = held[1] if held else handler.owner(obj)
                else:
                    m, target = handler.mark(obj), handler.owner(obj)
                    if held_marks.get(key) == (m, target):
                        continue
                    held_marks[key] = (m, target)
                if target is not None:
                    self.queue.add(target, urgent=not gone and handler.urgent(obj))

        while not stop.is_set():
            try:
                if version is None:
                    response = call(*args, _preload_content=False, **kwargs)
                    listing = json.loads(response.data)
                    items = listing.get("items") or []
                    store.replace(items)
                    present = {(i["metadata"]["namespace"], i["metadata"]["name"]) for i in items}
                    known = {k for held_marks in marks for k in held_marks}
                    for ns, name in [k for k in known if k not in present]:  # went while no watch was open
                        changed({"metadata": {"namespace": ns, "name": name}}, gone=True)
                    for item in items:
                        changed(item)
                    version = listing["metadata"]["resourceVersion"]
                w = watch.Watch()
                options = {**kwargs, "timeout_seconds": self.watch_seconds, "deserialize": False,
                           "allow_watch_bookmarks": True, "resource_version": version}
                for event in w.stream(call, *args, **options):
                    if stop.is_set():
                        w.stop()
                        break
                    if event["type"] == "ERROR":  # 410 Gone: too old; list again
                        version = None
                        break
                    obj = event["object"]
                    version = (obj.get("metadata") or {}).get("resourceVersion") or version
                    if event["type"] == "BOOKMARK":
                        continue
                    if event["type"] == "DELETED":
                        store.delete(obj)
                        changed(obj, gone=True)
                    else:  # never back over a newer copy (a write's own response)
                        store.upsert(obj, newer_only=True)
                        changed(obj)
            except client.ApiException as exc:
                version = None
                if exc.status == 404:
                    # Its CRD is not installed (yet): an empty store, so the other
                    # kinds' reconcilers are not held up; looked for again later.
                    log.warning("%s: no such resource on the apiserver (is its CRD installed?); "
                                "retrying every %d s", informer.kind, MISSING_KIND_RETRY_SECONDS)
                    store.replace([])
                    stop.wait(MISSING_KIND_RETRY_SECONDS)
                else:
                    log.warning("%s watch restarts: %s %s", informer.kind, exc.status, exc.reason)
                    stop.wait(1)
            except Exception as exc:  # noqa: BLE001 - a watch must survive anything
                version = None
                log.warning("%s watch restarts: %s", informer.kind, exc)
                stop.wait(1)

    def _resync(self, stop: threading.Event) -> None:
        """Every object of a reconciled kind again now and then, from the cache (no LIST)."""
        while not stop.wait(self.settings.resync_seconds):
            for kind in self.reconcilers:
                for ns, name in self.cache.store(kind).all_keys():
                    self.queue.add((kind, ns, name))

    # -- workers -------------------------------------------------------------
    def _work(self, stop: threading.Event, tuning_only: bool = False) -> None:
        failures: dict[Key, int] = {}
        if not self.cache.wait_synced(stop):  # no decision on a half-filled cache
            return
        while not stop.is_set():
            key = self.queue.get(stop, first_only=tuning_only)
            if key is None:
                continue
            started = time.monotonic()
            try:
                result = self.reconcilers[key[0]].reconcile(key[1], key[2])
                failures.pop(key, None)
                outcome = "ok"
                if result.created:
                    self._trace(key, started, result)
                if result.requeue_after:
                    self.queue.add(key, after=result.requeue_after)
            except RetryableError as exc:
                n = failures[key] = failures.get(key, 0) + 1
                outcome = "retry"
                log.warning(json.dumps({"kind": key[0], "job": f"{key[1]}/{key[2]}", "retry": n, "error": str(exc)}))
                self.queue.add(key, after=min(60.0, 0.5 * 2 ** n))
            except Exception as exc:  # noqa: BLE001 - our own bug: log, back off, keep going
                n = failures[key] = failures.get(key, 0) + 1
                outcome = "error"
                log.exception("reconcile %s %s/%s crashed: %s", *key, exc)
                self.queue.add(key, after=min(300.0, 2.0 * 2 ** n))
            finally:
                self.queue.done(key)
            self.reconciles += 1
            if RECONCILES is not None:
                RECONCILES.labels(outcome).inc()
                RECONCILE_SECONDS.observe(time.monotonic() - started)

    def _trace(self, key: Key, started: float, result: Any) -> None:
        """One line per pass that created children, with wall-clock times: when
        the key was queued (the watch event that asked for it), when a worker
        took it, when the pass ended (bench/tuning_controller.py splits the
        latency with them)."""
        now, wall = time.monotonic(), time.time()
        taken = wall - (now - started)
        trace.info(json.dumps({"trace": "created", "kind": key[0], "key": f"{key[1]}/{key[2]}",
                               "queued": self.queue.queued_since(key) or taken, "taken": taken, "done": wall,
                               "stages": dict(result.stages), "children": list(result.created)}))

    def run(self, stop: threading.Event, leader: LeaderElector | None = None) -> None:
        if leader is not None:
            while not stop.is_set() and not leader.try_acquire():
                stop.wait(2)
            renew = threading.Thread(target=self._renew, args=(leader, stop), daemon=True)
            renew.start()
        threads = [threading.Thread(target=self._watch, args=(stop, informer), daemon=True)
                   for informer in self.informers()]
        threads.append(threading.Thread(target=self._resync, args=(stop,), daemon=True))
        threads += [threading.Thread(target=self._work, args=(stop,), daemon=True)
                    for _ in range(self.workers)]
        threads += [threading.Thread(target=self._work, args=(stop, True), name=f"tuning-worker-{i}", daemon=True)
                    for i in range(self.tuning_workers)]
        from .retraining.loop import RetrainingLoop  # RetrainingPolicies, until the manager watches them

        threads.append(threading.Thread(target=RetrainingLoop(self.api, self.namespace).run, args=(stop,),
                                        name="retraining", daemon=True))
        for t in threads:
            t.start()
        stop.wait()
        for t in threads:
            t.join(timeout=self.watch_seconds + 5)

    def _renew(self, leader: LeaderElector, stop: threading.Event) -> None:
        while not stop.wait(leader.lease_seconds / 3):
            try:
                if not leader.try_acquire():
                    log.error("lost the leader lease; stopping")
                    stop.set()
            except client.ApiException as exc:
                log.warning("lease renewal failed: %s", exc.reason)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"time": self.formatTime(record), "level": record.levelname,
                           "logger": record.name, "msg": redact_userinfo(record.getMessage())})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="trainforge-controller")
    parser.add_argument("--namespace", default=os.environ.get("WATCH_NAMESPACE") or None)
    parser.add_argument("--metrics-port", type=int, default=8080)
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    parser.add_argument("--tuning-workers", type=int, default=DEFAULT_TUNING_WORKERS,
                        help="workers reserved for TuningJobs (on top of --workers)")
    parser.add_argument("--no-leader-election", action="store_true")
    parser.add_argument("--trace", action="store_true",
                        help="a timing line per pass that created children (queued, taken, done)")
    parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO").upper(),
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="DEBUG adds one line per status write, naming the fields that changed")
    args = parser.parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(_JsonFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    log.setLevel(args.log_level)
    trace.setLevel(logging.INFO if args.trace else logging.WARNING)
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    configuration = client.Configuration.get_default_copy()
    # One connection per worker and per trial create in flight, plus the
    # watches (each holds one open), the event sender, the lease and a spare:
    # a smaller pool discards and reopens connections under load.
    configuration.connection_pool_maxsize = max(configuration.connection_pool_maxsize,
                                                args.workers + args.tuning_workers + CREATE_PARALLELISM + 7)
    api = client.ApiClient(configuration)
    settings = ControllerSettings.from_env()
    if start_http_server is not None and args.metrics_port:
        start_http_server(args.metrics_port)
    leader = None if args.no_leader_election else LeaderElector(
        api, os.environ.get("POD_NAMESPACE", settings.catalog_namespace))
    stop = threading.Event()
    import signal

    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    log.info("trainforge controller starting")
    Controller(api, settings, args.namespace, args.workers, tuning_workers=args.tuning_workers).run(stop, leader)
    return 0


if __name__ == "__main__":
    sys.exit(main())
