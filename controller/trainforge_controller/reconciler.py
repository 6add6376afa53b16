"""The thin apply: observe (the watches' cache, no GET or LIST) ->
``status.decide`` -> create what is missing (AlreadyExists is success) ->
write status once -> events after the write (sent in the background)."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from kubernetes import client
from pydantic import ValidationError

from trainforge.artifacts import tenancy_issues
from trainforge.errors import TrainforgeError
from trainforge.instances import InstanceType, lookup
from trainforge.metrics import final_values, read_stored_records
from trainforge.spec import Phase, TrainingJob
from trainforge.spec.loading import issues_from
from trainforge.storage import ObjectStore, open_store

from . import GROUP, PLURAL, VERSION
from .archive import FOLD_POLL_SECONDS, Archiver, LogReader
from .builder import CREDENTIALS_VOLUME, artifacts, build_job, build_service, needs_service
from .cache import KUEUE_GROUP, KUEUE_VERSION, Cache
from .catalog import load_catalog
from .credentials import JobCredentials
from .errors import ConfigError, RetryableError, TerminalError
from .events import EventSender
from .settings import ControllerSettings
from .status import Decision, Observed, attempt_of, decide, headline_metric, only_the_clock
from .wire import Wire, core_path, group_path

log = logging.getLogger("trainforge.controller")

# Phases whose status changes with time alone (billable seconds), so are requeued.
_CLOCKED = frozenset({Phase.STAGING, Phase.TRAINING, Phase.UPLOADING})
TERMINAL_STATUSES = frozenset({403, 422})

StoreOpener = Callable[[str], ObjectStore]


@dataclass
class Result:
    requeue_after: float | None = None
    phase: str | None = None
    created: tuple[str, ...] = ()  # children this pass created (the controller's trace)
    stages: tuple[tuple[str, float], ...] = ()  # seconds per stage of the pass (the trace)


class Reconciler:
    def __init__(self, api: client.ApiClient, settings: ControllerSettings,
                 store_opener: StoreOpener | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 read_log: LogReader | None = None, cache: Cache | None = None):
        self.api = api
        self.cache = cache or Cache()  # the Controller's watches fill it
        self.settings = settings
        self.core = client.CoreV1Api(api)
        self.wire = Wire(api)  # the writes: plain JSON, no client-model round trip
        self.store_opener = store_opener or (lambda uri: open_store(uri))
        self.clock = clock
        # The controller's own credentials reach only its default output root;
        # everything a spec chose is read and written with the job's (credentials.py).
        self.credentials = JobCredentials(api, settings, self.store_opener, clock)
        self.archiver = Archiver(self.core, self._job_store, read_log)
        self._catalog_lock = threading.Lock()
        self._catalog_cache: tuple[float, dict[str, InstanceType]] | None = None  # (expires, catalog)
        self.events = EventSender(self.wire)

    # -- observe ------------------------------------------------------------
    def _catalog(self, fresh: bool = False) -> dict[str, InstanceType]:
        """The catalog, read at most every ``catalog_seconds`` (``fresh``: now)."""
        with self._catalog_lock:
            if fresh or self._catalog_cache is None or time.monotonic() > self._catalog_cache[0]:
                catalog = load_catalog(self.core, self.settings.catalog_namespace,
                                       self.settings.catalog_configmap)
                self._catalog_cache = (time.monotonic() + self.settings.catalog_seconds, catalog)
            return self._catalog_cache[1]

    def _instance(self, name: str) -> InstanceType:
        try:
            return lookup(name, self._catalog())
        except KeyError:  # a type added since the catalog was read is found at once
            return lookup(name, self._catalog(fresh=True))

    def reconcile(self, namespace: str, name: str) -> Result:
        try:
            return self._reconcile(namespace, name)
        except client.ApiException as exc:
            raise RetryableError(f"{namespace}/{name}: {exc.status} {exc.reason}") from exc

    def _reconcile(self, namespace: str, name: str) -> Result:
        raw = self.cache.training_jobs.get(namespace, name)
        if raw is None:  # deleted (or not seen yet: its ADDED event queues it again)
            self.credentials.forget(namespace, name)
            return Result()
        uid = raw["metadata"]["uid"]
        now = self.clock()
        try:
            job = TrainingJob.model_validate(_wire(raw))
        except ValidationError as exc:
            # The apiserver checks the schema; what only pydantic knows lands here.
            invalid = _invalid(raw, invalid_spec(exc), now)
            return self._write(raw, None, invalid, invalid.events)
        issues = tenancy_issues(job, self.settings.default_output)
        if issues:  # terminal: another job's artifacts are not this spec's to write
            invalid = _invalid(raw, "invalid spec: " + "; ".join(str(i) for i in issues), now)
            return self._write(raw, job, invalid, invalid.events)
        observed = Observed(now=now, artifacts=artifacts(job, self.settings), kueue=self.settings.kueue)
        try:
            observed.instance = self._instance(job.spec.instance.type)
        except (KeyError, ConfigError) as exc:
            observed.instance_error = str(exc).strip("'\"")
        observed.jobs = [j for j in self.cache.jobs.by_label(namespace, name) if _owned_by(j, uid)]
        if observed.jobs:
            latest = max(observed.jobs, key=attempt_of)
            observed.pods = self.cache.pods.by_label(namespace, latest["metadata"]["name"])
            observed.workload = next((w for w in self.cache.workloads.by_label(namespace, latest["metadata"]["name"])
                                      if _owned_by(w, latest["metadata"].get("uid", ""))), None)
            observed.earlier_pods = [pod for j in observed.jobs if j is not latest
                                     for pod in self.cache.pods.by_label(namespace, j["metadata"]["name"])]
            if not (job.status and job.status.phase.finished) and not _finished(latest):
                self.credentials.refresh(job, uid, _uses_job_credentials(latest))
            self.archiver.archive_logs(job, observed)  # before any verdict is written
            if _finished(latest) and not (job.status and job.status.phase.finished):
                self._read_results(job, observed)
        decision = decide(job, observed)
        folded = self.archiver.fold_metrics(job, observed, decision)
        if folded is None:  # folding on the fold thread: the final verdict waits for its metrics
            return Result(requeue_after=FOLD_POLL_SECONDS)
        if folded:  # the regex metrics are final too
            self._read_results(job, observed)
            decision = decide(job, observed)
        # -- apply: children first, then status once, then events --------------
        if decision.create_attempt is not None and observed.instance is not None:
            try:
                if needs_service(job):  # outlives attempts; made with each one (AlreadyExists is success)
                    self._create(core_path(namespace, "services"), build_service(job, uid, self.settings))
                secret = self.credentials.ensure(job, uid)  # fresh for every attempt
                body = build_job(job, uid, decision.create_attempt, observed.instance, self.settings,
                                 decision.deadline_seconds, credentials_secret=secret)
                created = self._create(group_path("batch/v1", namespace, "jobs"), body)
            except TerminalError as exc:  # retrying the same body gets the same answer
                rejected = _invalid(raw, str(exc), now, kind="ChildRejected")
                return self._write(raw, job, rejected, rejected.events)
            if created is not None:  # seen at once, before its watch event arrives
                self.cache.jobs.upsert(created, newer_only=True)
        if decision.suspend_job:
            self.wire.merge_patch(group_path("batch/v1", namespace, "jobs", decision.suspend_job),
                                  {"spec": {"suspend": True}})
        if decision.deactivate_workload:
            try:  # Kueue then evicts it: the Job stays suspended and its quota is released
                self.wire.merge_patch(group_path(f"{KUEUE_GROUP}/{KUEUE_VERSION}", namespace, "workloads",
                                                 decision.deactivate_workload), {"spec": {"active": False}})
            except client.ApiException as exc:
                if exc.status != 404:  # gone: nothing left to hold the quota
                    raise
        if not decision.write_status:
            return Result(phase=decision.status.phase.value)
        result = self._write(raw, job, decision, decision.events)
        if decision.status.phase in _CLOCKED:
            # Only the clock changes a running job's status (billable seconds);
            # everything else arrives as a watch event on the job, its Jobs or pods.
            result.requeue_after = self.settings.requeue_seconds
        return result

    def _read_results(self, job: TrainingJob, observed: Observed) -> None:
        """Final metrics and which artifacts exist; an unreachable store leaves
        them out (the status says so) rather than blocking the job's verdict."""
        art = observed.artifacts
        assert art is not None
        stored = set()
        try:
            store = self._job_store(job, art.metrics)
            if store is None:
                log.warning("%s/%s: no credentials of its own to read its results at %s",
                            job.metadata.namespace, job.name, art.root)
                observed.stored = frozenset()
                return
            for uri in (art.model, art.output, art.metrics):
                if store.exists(uri):
                    stored.add(uri)
            if art.metrics in stored:
                observed.final_metrics = final_values(read_stored_records(store, art.metrics))
        except (TrainforgeError, ValueError) as exc:
            log.warning("reading results of %s/%s: %s", job.metadata.namespace, job.name, exc)
        observed.stored = frozenset(stored)

    def _job_store(self, job: TrainingJob, uri: str) -> ObjectStore | None:
        raw = self.cache.training_jobs.get(job.metadata.namespace, job.name)
        uid = raw["metadata"]["uid"] if raw else ""
        return self.credentials.store(job, uid, uri)

    # -- apply --------------------------------------------------------------
    def _create(self, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        return create_child(self.wire, path, body)

    def _write(self, raw: dict[str, Any], job: TrainingJob | None, decision: Decision,
               events: list[tuple[str, str, str]]) -> Result:
        ns, name = raw["metadata"]["namespace"], raw["metadata"]["name"]
        new = decision.status.model_dump(mode="json", by_alias=True, exclude_none=True)
        new.update(decision.extra)
        headline = headline_metric(job, decision.status.final_metrics) if job is not None else None
        if headline:
            new["headlineMetric"] = headline
        new["observedGeneration"] = raw["metadata"].get("generation", 0)
        old = raw.get("status") or {}
        if new != old and not only_the_clock(old, new, self.settings.requeue_seconds / 2):
            if log.isEnabledFor(logging.DEBUG):
                changed = sorted(k for k in new.keys() | old.keys() if new.get(k) != old.get(k))
                log.debug("status of %s/%s: %s -> %s; changed %s", ns, name, old.get("phase"),
                          new.get("phase"), ",".join(changed))
            patch = {**{k: None for k in old if k not in new}, **new}  # null removes a key
            try:
                written = self.wire.merge_patch(
                    group_path(f"{GROUP}/{VERSION}", ns, PLURAL, name) + "/status", {"status": patch})
            except client.ApiException as exc:
                if exc.status != 404:
                    raise
                self.cache.training_jobs.delete(raw)  # deleted meanwhile; the cache lagged
                return Result()
            if isinstance(written, dict) and "metadata" in written:  # the next pass starts from it
                self.cache.training_jobs.upsert(written, newer_only=True)
            for kind, reason, message in events:  # only after the write succeeded
                self._event(raw, kind, reason, message)
        return Result(phase=new.get("phase"))

    def _event(self, raw: dict[str, Any], kind: str, reason: str, message: str) -> None:
        meta = raw["metadata"]
        now = self.clock()
        body = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": raw["apiVersion"], "kind": raw["kind"], "name": meta["name"],
                               "namespace": meta["namespace"], "uid": meta["uid"]},
            "type": kind, "reason": reason, "message": message[:1024],
            "firstTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "lastTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "count": 1,
            "source": {"component": "trainforge-controller"},
        }
        self.events.send(body)


def _wire(raw: dict[str, Any]) -> dict[str, Any]:
    """The custom object as the SDK model reads it (server-only metadata dropped)."""
    meta = raw["metadata"]
    return {
        "apiVersion": raw["apiVersion"], "kind": raw["kind"],
        "metadata": {k: meta[k] for k in ("name", "namespace", "labels", "annotations") if k in meta},
        "spec": raw.get("spec") or {}, "status": raw.get("status"),
    }


def create_child(wire: Wire, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
    """Create a child; None when it exists (deterministic names make
    AlreadyExists success). 403 (forbidden: RBAC, a quota, an admission
    policy) and 422 (the body is invalid) are TerminalError: the same body
    gets the same answer. Everything else propagates (retried)."""
    try:
        return wire.create(path, body)
    except client.ApiException as exc:
        if exc.status == 409:
            return None
        if exc.status in TERMINAL_STATUSES:
            what = f"{body.get('kind', 'object')} {body.get('metadata', {}).get('name', '')}".strip()
            raise TerminalError(f"creating {what} was refused ({exc.status} {exc.reason}): "
                                f"{api_message(exc)}") from exc
        raise


def invalid_spec(exc: ValidationError) -> str:
    """A spec's problems worded as the SDK words them, each with its field
    path (``spec.inputs[0].uri``; cross-field rules carry their own paths)."""
    return "invalid spec: " + "; ".join(str(issue) for issue in issues_from(exc))


def api_message(exc: client.ApiException) -> str:
    """The apiserver's own words (its Status ``message``), else the reason."""
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except (ValueError, AttributeError):
        return str(exc.reason)


def _invalid(raw: dict[str, Any], reason: str, now: datetime, kind: str = "InvalidSpec") -> Decision:
    from trainforge.conditions import set_condition
    from trainforge.spec import TrainingJobStatus

    status = TrainingJobStatus.model_validate(raw.get("status") or {})
    if status.phase.finished:
        return Decision(status=status)
    status.phase, status.message, status.failure_reason = Phase.FAILED, reason, reason
    status.conditions = set_condition(status.conditions, "Failed", "True", kind, reason, now)
    return Decision(status=status, events=[("Warning", kind, reason)])


def _owned_by(obj: dict[str, Any], uid: str) -> bool:
    return any(o.get("uid") == uid for o in obj["metadata"].get("ownerReferences") or [])


def _uses_job_credentials(job: dict[str, Any]) -> bool:
    volumes = (((job.get("spec") or {}).get("template") or {}).get("spec") or {}).get("volumes") or []
    return any(v.get("name") == CREDENTIALS_VOLUME for v in volumes)


def _finished(job: dict[str, Any]) -> bool:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return True
    return False
