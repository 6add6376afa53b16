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
from typing import Any, Callable

from kubernetes import client, config, watch
from trainforge.uris import redact_userinfo

from . import GROUP, PLURAL, VERSION
from .builder import JOB_NAME_LABEL, MANAGED_BY
from .cache import Cache, Store, job_mark, pod_mark, training_job_mark
from .errors import RetryableError
from .leader import LeaderElector
from .reconciler import Reconciler
from .settings import ControllerSettings
from .workqueue import WorkQueue

log = logging.getLogger("trainforge.controller")

try:  # optional: the metrics endpoint needs prometheus_client
    from prometheus_client import Counter, Histogram, start_http_server

    RECONCILES = Counter("trainforge_reconciles_total", "reconcile passes", ["result"])
    RECONCILE_SECONDS = Histogram("trainforge_reconcile_seconds", "time per reconcile pass")
except ImportError:  # pragma: no cover
    RECONCILES = RECONCILE_SECONDS = None  # type: ignore[assignment]
    start_http_server = None  # type: ignore[assignment]

Key = tuple[str, str]
# Reconcile passes at once. A pass mostly waits on the apiserver (a Job create
# is ~40 ms of its time under load), so threads, not cores, bound how fast a
# burst of submissions gets its Jobs (bench/controller_scale.py).
DEFAULT_WORKERS = 16


class Controller:
    def __init__(self, api: client.ApiClient, settings: ControllerSettings | None = None,
                 namespace: str | None = None, workers: int = DEFAULT_WORKERS, watch_seconds: int = 30,
                 **reconciler_options: Any):
        self.api = api
        self.settings = settings or ControllerSettings()
        self.namespace = namespace
        self.cache = Cache()
        self.reconciler = Reconciler(api, self.settings, cache=self.cache, **reconciler_options)
        self.queue: WorkQueue[Key] = WorkQueue()
        self.workers = workers
        self.watch_seconds = watch_seconds  # how long a stop may wait on an open watch
        self.reconciles = 0

    # -- sources of keys, and the cache ------------------------------------------
    def _watch(self, stop: threading.Event, what: str, call: Any, args: tuple[Any, ...],
               store: Store, mark: Callable[[dict[str, Any]], str],
               owner: Callable[[dict[str, Any]], Key | None],
               urgent: Callable[[dict[str, Any]], bool] = lambda obj: False, **kwargs: Any) -> None:
        """An informer: LIST into ``store``, then watch from the list's
        resourceVersion, keeping ``store`` current (a watch ending every
        ``watch_seconds`` resumes where it was; 410 Gone or an error re-lists).
        The owner of an object is queued only when its ``mark`` changes (or it
        goes): the fields the decision reads; ahead of the rest when ``urgent``
        says so. Plain dicts, no client models."""
        version: str | None = None
        marks: dict[Key, tuple[str, Key | None]] = {}  # per object: its mark, its owner

        def changed(obj: dict[str, Any], gone: bool = False) -> None:
            meta = obj.get("metadata") or {}
            if "namespace" not in meta:
                return
            key = (meta["namespace"], meta["name"])
            if gone:
                held = marks.pop(key, None)
                target = held[1] if held else owner(obj)
            else:
                m, target = mark(obj), owner(obj)
                if marks.get(key) == (m, target):
                    return
                marks[key] = (m, target)
            if target is not None:
                self.queue.add(target, urgent=not gone and urgent(obj))

        while not stop.is_set():
            try:
                if version is None:
                    response = call(*args, _preload_content=False, **kwargs)
                    listing = json.loads(response.data)
                    items = listing.get("items") or []
                    store.replace(items)
                    present = {(i["metadata"]["namespace"], i["metadata"]["name"]) for i in items}
                    for key in [k for k in marks if k not in present]:  # went while no watch was open
                        changed({"metadata": {"namespace": key[0], "name": key[1]}}, gone=True)
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
            except Exception as exc:  # noqa: BLE001 - a watch must survive anything
                version = None
                log.warning("%s watch restarts: %s", what, exc)
                stop.wait(1)

    def _watch_jobs(self, stop: threading.Event) -> None:
        custom = client.CustomObjectsApi(self.api)
        call, args = ((custom.list_namespaced_custom_object, (GROUP, VERSION, self.namespace, PLURAL))
                      if self.namespace else (custom.list_cluster_custom_object, (GROUP, VERSION, PLURAL)))
        # Status-only changes queue nothing: the controller's own write would
        # otherwise queue the job again, and a running job's billable seconds
        # would change on every pass, for ever (controller-runtime's
        # Generation/Annotation/LabelChanged predicates).
        # A job without a status has never been reconciled: it waits for its
        # first Job, so it goes ahead of every follow-up pass.
        self._watch(stop, "TrainingJob", call, args, self.cache.training_jobs, training_job_mark,
                    lambda obj: (obj["metadata"]["namespace"], obj["metadata"]["name"]),
                    urgent=lambda obj: not obj.get("status"))

    def _watch_children(self, stop: threading.Event, kind: str) -> None:
        api = client.BatchV1Api(self.api) if kind == "jobs" else client.CoreV1Api(self.api)
        selector = ",".join(f"{k}={v}" for k, v in MANAGED_BY.items())
        lister = {"jobs": ("list_namespaced_job", "list_job_for_all_namespaces"),
                  "pods": ("list_namespaced_pod", "list_pod_for_all_namespaces")}[kind]
        call = getattr(api, lister[0] if self.namespace else lister[1])
        args = (self.namespace,) if self.namespace else ()
        store, mark = (self.cache.jobs, job_mark) if kind == "jobs" else (self.cache.pods, pod_mark)

        def owner(obj: dict[str, Any]) -> Key | None:
            meta = obj["metadata"]
            name = (meta.get("labels") or {}).get(JOB_NAME_LABEL)
            return (meta["namespace"], name) if name else None

        self._watch(stop, kind, call, args, store, mark, owner, label_selector=selector)

    def _resync(self, stop: threading.Event) -> None:
        """Every job again now and then, from the cache (no LIST)."""
        while not stop.wait(self.settings.resync_seconds):
            for key in self.cache.training_jobs.all_keys():
                self.queue.add(key)

    # -- workers -------------------------------------------------------------
    def _work(self, stop: threading.Event) -> None:
        failures: dict[Key, int] = {}
        if not self.cache.wait_synced(stop):  # no decision on a half-filled cache
            return
        while not stop.is_set():
            key = self.queue.get(stop)
            if key is None:
                continue
            started = time.monotonic()
            try:
                result = self.reconciler.reconcile(*key)
                failures.pop(key, None)
                outcome = "ok"
                if result.requeue_after:
                    self.queue.add(key, after=result.requeue_after)
            except RetryableError as exc:
                n = failures[key] = failures.get(key, 0) + 1
                outcome = "retry"
                log.warning(json.dumps({"job": f"{key[0]}/{key[1]}", "retry": n, "error": str(exc)}))
                self.queue.add(key, after=min(60.0, 0.5 * 2 ** n))
            except Exception as exc:  # noqa: BLE001 - our own bug: log, back off, keep going
                n = failures[key] = failures.get(key, 0) + 1
                outcome = "error"
                log.exception("reconcile %s/%s crashed: %s", key[0], key[1], exc)
                self.queue.add(key, after=min(300.0, 2.0 * 2 ** n))
            finally:
                self.queue.done(key)
            self.reconciles += 1
            if RECONCILES is not None:
                RECONCILES.labels(outcome).inc()
                RECONCILE_SECONDS.observe(time.monotonic() - started)

    def run(self, stop: threading.Event, leader: LeaderElector | None = None) -> None:
        if leader is not None:
            while not stop.is_set() and not leader.try_acquire():
                stop.wait(2)
            renew = threading.Thread(target=self._renew, args=(leader, stop), daemon=True)
            renew.start()
        threads = [threading.Thread(target=self._watch_jobs, args=(stop,), daemon=True),
                   threading.Thread(target=self._watch_children, args=(stop, "jobs"), daemon=True),
                   threading.Thread(target=self._watch_children, args=(stop, "pods"), daemon=True),
                   threading.Thread(target=self._resync, args=(stop,), daemon=True)]
        threads += [threading.Thread(target=self._work, args=(stop,), daemon=True)
                    for _ in range(self.workers)]
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
    parser.add_argument("--no-leader-election", action="store_true")
    parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO").upper(),
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="DEBUG adds one line per status write, naming the fields that changed")
    args = parser.parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(_JsonFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    log.setLevel(args.log_level)
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    configuration = client.Configuration.get_default_copy()
    # One connection per worker, plus the three watches (each holds one open),
    # the event sender, the lease and a spare: a smaller pool discards and
    # reopens connections under load.
    configuration.connection_pool_maxsize = max(configuration.connection_pool_maxsize, args.workers + 6)
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
    Controller(api, settings, args.namespace, args.workers).run(stop, leader)
    return 0


if __name__ == "__main__":
    sys.exit(main())
