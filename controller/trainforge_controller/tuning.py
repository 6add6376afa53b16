"""The TuningJob reconciler: level-triggered, like the TrainingJob's.

observe   the TuningJob and its trial TrainingJobs (the watches' cache, by the
          ``trainforge.dev/tuning-job`` label, owned by this TuningJob's uid),
          each trial's objective series (its archived ``metrics.jsonl`` in the
          object store, read with the trial's credentials; only when a rule
          reads series: early stopping, hyperband)
decide    ``trainforge.tuning.engine.plan`` -- the same pure engine the local
          tuning supervisor runs -- and ``tuning_status`` (pure)
apply     stop trials (the stop annotation plus why), create the new trials
          at once, a few in parallel (deterministic names ``<tuning>-NNN``, the
          lowest free numbers first so a failed create's number is the next
          pass's; owner reference to the TuningJob; AlreadyExists is success),
          then one status write: counts, the best
          trial, conditions, phase. Never the trial history: the trial table is
          the children plus the object store (etcd's object limit).

Nothing is remembered between passes that the cluster does not hold, so a
restarted controller neither loses nor repeats a trial. (Finished trials'
series are memoized: their metrics no longer change.)
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from kubernetes import client
from pydantic import ValidationError

from trainforge._time import parse_time
from trainforge.artifacts import ArtifactURIs
from trainforge.errors import TrainforgeError
from trainforge.metrics import read_stored_records
from trainforge.names import (
    API_VERSION, EARLY_STOP_ANNOTATION, GROUP, STOP_ANNOTATION, STOP_REASON_ANNOTATION, TRAINING_KIND,
    TRAINING_PLURAL, TRIAL_LABEL, TUNING_KIND, TUNING_PLURAL, VERSION,
)
from trainforge.spec import TrainingJob
from trainforge.spec.tuning import (
    BestTrial, EarlyStoppingType, StrategyType, TuningJob, TuningJobStatus,
)
from trainforge.tuning import TrialRecord, TrialState, plan
from trainforge.tuning.engine import Plan, StudyMemo
from trainforge.tuning.trials import trial_job, trial_number, trial_record

from .cache import Cache
from .credentials import JobCredentials
from .errors import RetryableError, TerminalError
from .reconciler import Result, _owned_by, _wire, create_child, invalid_spec
from .settings import ControllerSettings
from trainforge.conditions import set_condition, tuning_phase

from .status import attempt_of, job_condition
from .wire import Wire, group_path

log = logging.getLogger("trainforge.controller")

FINISHED = frozenset({"Completed", "Failed", "Stopped"})
Obj = dict[str, Any]
# Trial creates in flight at once for one pass. One create is an apiserver
# round trip (~40 ms idle, seconds under load); one after the other, the last
# of 64 new trials waited for all the others (p99 2 s of a pass).
CREATE_PARALLELISM = 8


def _fmt(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def reads_series(tuning: TuningJob) -> bool:
    """Whether a rule judges running trials by their intermediate objective."""
    spec = tuning.spec
    return spec.strategy.type == StrategyType.HYPERBAND or spec.early_stopping.type != EarlyStoppingType.OFF


def trial_body(tuning: TuningJob, uid: str, number: int, hyperparameters: dict[str, str]) -> Obj:
    """Trial ``number`` as a TrainingJob custom object, owned by the TuningJob
    (deleting the tuning job deletes its trials)."""
    job = trial_job(tuning, number, hyperparameters)
    body = job.model_dump(mode="json", by_alias=True, exclude={"status"}, exclude_none=True)
    body["apiVersion"], body["kind"] = API_VERSION, TRAINING_KIND
    body["metadata"]["ownerReferences"] = [{"apiVersion": API_VERSION, "kind": TUNING_KIND, "name": tuning.name,
                                            "uid": uid, "controller": True}]
    return body


def stop_patch(reason: str, early: bool) -> Obj:
    annotations = {STOP_ANNOTATION: "true", STOP_REASON_ANNOTATION: reason[:1024]}
    if early:
        annotations[EARLY_STOP_ANNOTATION] = "true"
    return {"metadata": {"annotations": annotations}}


def early_stops(trials: dict[int, Obj]) -> dict[int, str]:
    """Trial number -> why an early-stopping rule stopped it (its annotations)."""
    out = {}
    for number, raw in trials.items():
        annotations = raw["metadata"].get("annotations") or {}
        if annotations.get(EARLY_STOP_ANNOTATION) == "true":
            out[number] = annotations.get(STOP_REASON_ANNOTATION, "")
    return out


def hosts_released(jobs: list[Obj], pods: Callable[[str], list[Obj]], hosts: int) -> bool:
    """Whether a trial's trainer has ended on every host: each pod of its
    latest attempt Succeeded (a Succeeded pod holds no GPU for the scheduler).
    Seen here the moment the pods end, not after kube's Job controller marks
    the Job Complete and the trial's own pass reads its results, so the next
    trial gets the GPUs without waiting for that bookkeeping."""
    if not jobs:
        return False
    latest = max(jobs, key=attempt_of)
    if job_condition(latest, "Failed"):
        return False  # retried as a new attempt, which needs the hosts again
    succeeded = [p for p in pods(latest["metadata"]["name"]) if (p.get("status") or {}).get("phase") == "Succeeded"]
    return len(succeeded) >= hosts


def free_numbers(taken: set[int] | dict[int, Any], count: int) -> list[int]:
    """The numbers of the next ``count`` trials: the holes below the highest
    number first (a create that failed while later ones succeeded), then after
    it. So names stay deterministic and a hole is filled by the next pass."""
    top = max(taken, default=-1)
    out = [n for n in range(top) if n not in taken][:count]
    return out + list(range(top + 1, top + 1 + count - len(out)))


def same_state(old: Obj, new: Obj) -> bool:
    """Whether two status dicts differ at most in what a write may hold back:
    counts, the best trial, messages."""
    def state(status: Obj) -> Obj:
        out = {k: v for k, v in status.items() if k not in ("trials", "bestTrial", "message")}
        out["conditions"] = [{k: v for k, v in c.items() if k != "message"} for c in status.get("conditions") or []]
        return out
    return state(old) == state(new)


@dataclass
class TuningDecision:
    status: TuningJobStatus
    events: list[tuple[str, str, str]] = field(default_factory=list)


def tuning_status(old: TuningJobStatus, step: Plan, active: int, started: int, max_trials: int,
                  now: datetime) -> TuningDecision:
    """The status after a pass (pure): phase, message, counts, the best trial,
    conditions. A finished verdict waits for the trials still running."""
    status = old.model_copy(deep=True)
    status.trials = step.counts
    if step.best is not None and step.best.final_objective is not None:
        status.best_trial = BestTrial(name=step.best.name, number=step.best.number,
                                      objective=step.best.final_objective,
                                      hyperparameters=dict(step.best.hyperparameters))
    status.start_time = status.start_time or _fmt(now)
    events: list[tuple[str, str, str]] = []
    if step.finished is not None and active == 0:
        phase, message = step.finished
        if status.phase != phase:
            events.append(("Warning" if phase == "Failed" else "Normal", phase, message))
        status.phase, status.message = phase, message
        status.failure_reason = message if phase == "Failed" else None
        status.end_time = status.end_time or _fmt(now)
    elif step.finished is not None:
        status.phase = "Running"
        status.message = f"ending ({step.finished[1]}): waiting for {active} trials"
    else:
        status.phase = "Running"
        status.message = f"{started} of {max_trials} trials started, {active} active"
    status.conditions = tuning_phase(status.conditions, status.phase, status.message, now)
    return TuningDecision(status, events)


def failed_status(old: TuningJobStatus, reason: str, kind: str, now: datetime) -> TuningDecision:
    status = old.model_copy(deep=True)
    if status.phase in FINISHED:
        return TuningDecision(status)
    status.phase, status.message, status.failure_reason = "Failed", reason, reason
    status.start_time = status.start_time or _fmt(now)
    status.end_time = _fmt(now)
    status.conditions = tuning_phase(status.conditions, "Failed", reason, now)
    status.conditions = set_condition(status.conditions, "Failed", "True", kind, reason, now)  # the reason: why
    return TuningDecision(status, [("Warning", kind, reason)])


class TuningReconciler:
    def __init__(self, api: client.ApiClient, settings: ControllerSettings, cache: Cache,
                 credentials: JobCredentials, event: Callable[[Obj, str, str, str], None],
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.settings = settings
        self.cache = cache
        self.credentials = credentials
        self.wire = Wire(api)
        self.event = event
        self.clock = clock
        self._series_lock = threading.Lock()
        self._finished: dict[str, list[Any]] = {}  # trial uid -> its metric records, once it has ended
        # trial uid -> (resourceVersion, the parsed TrainingJob): a pass parses
        # only the trials that changed (1,000 parses took ~1 s a pass).
        self._parsed: dict[str, tuple[str, TrainingJob]] = {}
        # (namespace, name) -> (uid, its study), kept between passes (only speed: a
        # new controller rebuilds it from the trials; a key is never reconciled twice at once)
        self._studies: dict[tuple[str, str], tuple[str, StudyMemo]] = {}
        self._written: dict[tuple[str, str], float] = {}  # (namespace, name) -> its last status write (monotonic)
        # Shared by every pass; its threads start on first use.
        self._creates = ThreadPoolExecutor(max_workers=CREATE_PARALLELISM, thread_name_prefix="trial-create")

    def reconcile(self, namespace: str, name: str) -> Result:
        try:
            return self._reconcile(namespace, name)
        except client.ApiException as exc:
            raise RetryableError(f"{TUNING_KIND} {namespace}/{name}: {exc.status} {exc.reason}") from exc

    # -- observe ------------------------------------------------------------------
    def trials(self, raw: Obj) -> dict[int, Obj]:
        """Trial number -> its TrainingJob object (owned by this TuningJob)."""
        meta = raw["metadata"]
        out = {}
        for obj in self.cache.training_jobs.by_label(meta["namespace"], meta["name"]):
            if not _owned_by(obj, meta["uid"]):
                continue  # a namesake's trial, or a job someone labelled by hand
            try:
                out[int(obj["metadata"]["labels"][TRIAL_LABEL])] = obj
            except (KeyError, ValueError):
                continue
        return out

    def _series_records(self, job: TrainingJob, uid: str) -> list[Any]:
        uri = ArtifactURIs.of(job, self.settings.default_output).metrics
        try:
            store = self.credentials.store(job, uid, uri)
            if store is None or not store.exists(uri):
                return []
            return read_stored_records(store, uri)
        except (TrainforgeError, ValueError, OSError) as exc:
            log.warning("reading metrics of trial %s/%s: %s", job.metadata.namespace, job.name, exc)
            return []

    def records(self, tuning: TuningJob, trials: dict[int, Obj], with_series: bool) -> list[TrialRecord]:
        stops = early_stops(trials)
        out = []
        for number, raw in sorted(trials.items()):
            try:
                job = self._parse(raw)
            except ValidationError:
                # Its own reconciler fails it; until then it counts as pending.
                out.append(TrialRecord(number=number, name=raw["metadata"]["name"], hyperparameters={},
                                       state=TrialState.PENDING))
                continue
            if trial_number(job, tuning.name) != number:
                continue
            metric_records: list[Any] = []
            if with_series:
                metric_records = self._metric_records(job, raw)
            out.append(trial_record(tuning.spec, number, job, metric_records, number in stops,
                                    released=self._released(job, raw)))
        return out

    def _released(self, job: TrainingJob, raw: Obj) -> bool:
        if job.status is not None and job.status.phase.finished:
            return False  # not active: nothing to release
        meta = raw["metadata"]
        namespace = meta["namespace"]
        jobs = [j for j in self.cache.jobs.by_label(namespace, meta["name"]) if _owned_by(j, meta["uid"])]
        return hosts_released(jobs, lambda name: self.cache.pods.by_label(namespace, name), job.spec.instance.count)

    def _parse(self, raw: Obj) -> TrainingJob:
        meta = raw["metadata"]
        held = self._parsed.get(meta["uid"])
        if held is not None and held[0] == meta.get("resourceVersion"):
            return held[1]
        job = TrainingJob.model_validate(_wire(raw))
        self._parsed[meta["uid"]] = (meta.get("resourceVersion", ""), job)
        return job

    def forget(self, trials: dict[int, Obj]) -> None:
        """A finished tuning job's trials leave the memos."""
        for raw in trials.values():
            uid = raw["metadata"]["uid"]
            self._parsed.pop(uid, None)
            with self._series_lock:
                self._finished.pop(uid, None)

    def _metric_records(self, job: TrainingJob, raw: Obj) -> list[Any]:
        uid = raw["metadata"]["uid"]
        with self._series_lock:
            held = self._finished.get(uid)
        if held is not None:
            return held
        records = self._series_records(job, uid)
        if job.status is not None and job.status.phase.finished:  # its metrics change no more
            with self._series_lock:
                self._finished[uid] = records
        return records

    def _warm(self, tuning: TuningJob, namespace: str) -> list[TrialRecord]:
        if tuning.spec.warm_start is None:
            return []
        out: list[TrialRecord] = []
        for i, parent in enumerate(tuning.spec.warm_start.parents):
            raw = self.cache.tuning_jobs.get(namespace, parent)
            if raw is None:
                raise TerminalError(f"spec.warmStart.parents[{i}]: no tuning job named {parent!r} "
                                    f"in namespace {namespace}")
            parent_job = TuningJob.model_validate(_wire(raw))
            out.extend(self.records(parent_job, self.trials(raw), with_series=False))
        return out

    # -- the pass -----------------------------------------------------------------
    def _reconcile(self, namespace: str, name: str) -> Result:
        began = time.monotonic()
        raw = self.cache.tuning_jobs.get(namespace, name)
        if raw is None:
            self._studies.pop((namespace, name), None)
            self._written.pop((namespace, name), None)
            return Result()
        now = self.clock()
        old = TuningJobStatus.model_validate(raw.get("status") or {})
        try:
            tuning = TuningJob.model_validate(_wire(raw))
        except ValidationError as exc:
            # The apiserver checks the schema; the rules between fields land here
            # (raised in pydantic's validators, so they arrive as its errors).
            return self._write(raw, failed_status(old, invalid_spec(exc), "InvalidSpec", now))
        if old.phase in FINISHED:
            self.forget(self.trials(raw))
            self._studies.pop((namespace, name), None)
            self._written.pop((namespace, name), None)
            return Result(phase=old.phase)
        uid = raw["metadata"]["uid"]
        trials = self.trials(raw)
        with_series = reads_series(tuning)
        records = self.records(tuning, trials, with_series)
        try:
            warm = self._warm(tuning, namespace)
        except TerminalError as exc:
            return self._write(raw, failed_status(old, str(exc), "InvalidSpec", now))
        started = parse_time(old.start_time) if old.start_time else now
        elapsed = (now - started).total_seconds()
        stop_requested = (raw["metadata"].get("annotations") or {}).get(STOP_ANNOTATION) == "true"
        held = self._studies.get((namespace, name))
        if held is None or held[0] != uid:  # new, or a namesake of a deleted one
            held = self._studies[(namespace, name)] = (uid, StudyMemo())
        observed = time.monotonic()
        step = plan(tuning.spec, records, elapsed, stop_requested, warm, held[1])
        planned = time.monotonic()

        # -- apply: stops, then new trials, then the status once ---------------------
        for number, reason in step.stop:
            trial = trials.get(number)
            if trial is None or (trial["metadata"].get("annotations") or {}).get(STOP_ANNOTATION) == "true":
                continue
            self._patch_trial(namespace, trial["metadata"]["name"], stop_patch(reason, step.finished is None))
        bodies = [trial_body(tuning, uid, number, hyperparameters)
                  for number, hyperparameters in zip(free_numbers(trials, len(step.new)), step.new)]
        created, refused, failed = self._create_trials(namespace, bodies)
        if refused is not None:
            return self._write(raw, failed_status(old, str(refused), "TrialRejected", now))
        if failed is not None:
            # The trials created are in the cache; the next pass (backed off)
            # creates exactly the missing numbers, with fresh proposals.
            raise failed
        active = sum(1 for r in records if r.state.active) + len(step.new)
        decision = tuning_status(old, step, active, len(records) + len(step.new), tuning.spec.limits.max_trials, now)
        applied = time.monotonic()
        result = self._write(raw, decision, hold=True)
        result.created = tuple(created)
        result.stages = (("observe", observed - began), ("plan", planned - observed),
                         ("stop+create", applied - planned), ("status", time.monotonic() - applied))
        if decision.status.phase not in FINISHED:
            # Trial events queue a pass; time alone must too: the runtime limit,
            # and the series of running trials where a rule reads them.
            left = tuning.spec.limits.max_runtime_seconds - elapsed
            result.requeue_after = min(max(1.0, left), self.settings.requeue_seconds if with_series else 300.0,
                                       result.requeue_after or 300.0)
        return result

    def _create_trials(self, namespace: str, bodies: list[Obj]
                       ) -> tuple[list[str], TerminalError | None, Exception | None]:
        """Create ``bodies`` a few at a time; every create is waited for. Returns
        the names created (or found existing), the first refusal (403/422:
        terminal) and the first other failure (retried)."""
        path = group_path(f"{GROUP}/{VERSION}", namespace, TRAINING_PLURAL)

        def one(body: Obj) -> Obj | None:
            return create_child(self.wire, path, body)

        futures = [self._creates.submit(one, body) for body in bodies]
        created: list[str] = []
        refused: TerminalError | None = None
        failed: Exception | None = None
        for body, future in zip(bodies, futures):
            try:
                made = future.result()
            except TerminalError as exc:
                refused = refused or exc
                continue
            except Exception as exc:  # noqa: BLE001 - retried as a whole pass, after the others are in
                failed = failed or exc
                continue
            if made is not None:  # seen at once: the next pass numbers around it
                self.cache.training_jobs.upsert(made, newer_only=True)
            created.append(body["metadata"]["name"])
        return created, refused, failed

    def _patch_trial(self, namespace: str, name: str, patch: Obj) -> None:
        try:
            written = self.wire.merge_patch(group_path(f"{GROUP}/{VERSION}", namespace, TRAINING_PLURAL, name), patch)
        except client.ApiException as exc:
            if exc.status == 404:  # deleted meanwhile
                return
            raise
        if isinstance(written, dict) and "metadata" in written:
            self.cache.training_jobs.upsert(written, newer_only=True)

    def _write(self, raw: Obj, decision: TuningDecision, hold: bool = False) -> Result:
        """Write the status if it changed; with ``hold``, a change of counts
        and messages only waits until ``settings.tuning_status_seconds`` after
        the last write (the Result's requeue_after says when)."""
        meta = raw["metadata"]
        key = (meta["namespace"], meta["name"])
        decision.status.observed_generation = meta.get("generation", 0)
        new = decision.status.model_dump(mode="json", by_alias=True, exclude_none=True)
        old = raw.get("status") or {}
        last = self._written.get(key)
        if new != old and hold and last is not None and same_state(old, new):
            # Counts, the best trial and messages only: a busy tuning job changed
            # them on every pass, and the next pass waited for the write (p99
            # 0.6 s under load). Phase, conditions and times go at once.
            wait = last + self.settings.tuning_status_seconds - time.monotonic()
            if wait > 0:
                return Result(phase=new.get("phase"), requeue_after=wait)
        if new != old:
            self._written[key] = time.monotonic()
            patch = {**{k: None for k in old if k not in new}, **new}
            try:
                written = self.wire.merge_patch(
                    group_path(f"{GROUP}/{VERSION}", meta["namespace"], TUNING_PLURAL, meta["name"]) + "/status",
                    {"status": patch})
            except client.ApiException as exc:
                if exc.status != 404:
                    raise
                self.cache.tuning_jobs.delete(raw)
                return Result()
            if isinstance(written, dict) and "metadata" in written:
                self.cache.tuning_jobs.upsert(written, newer_only=True)
            for kind, reason, message in decision.events:
                self.event(raw, kind, reason, message)
        return Result(phase=new.get("phase"))

