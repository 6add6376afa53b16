"""Pure: (TrainingJob, what was observed) -> the new status and what to do.

No I/O. The reconciler observes (the attempt Jobs, the latest attempt's pods,
final metrics read from the object store) and applies the ``Decision``. The
decision is level-triggered: it is recomputed from the observed children on
every pass, never from a chain of earlier phases (a finished status is kept).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from trainforge.contract import read_failure_reason
from trainforge.instances import InstanceType
from trainforge.spec import Phase, TrainingJob, TrainingJobStatus
from trainforge.conditions import enter_phase, set_condition
from trainforge.spec.models import AttemptRecord, Condition
from trainforge.staging import ArtifactURIs

from trainforge.names import STOP_REASON_ANNOTATION

from .builder import ATTEMPT_LABEL, QUEUE_LABEL, STAGE_IN, STOP_ANNOTATION, TRAINER

_ORDER = [Phase.PENDING, Phase.QUEUED, Phase.STAGING, Phase.TRAINING, Phase.UPLOADING]
# The pod condition Kubernetes sets on a pod it evicts or preempts (Eviction API,
# node drain, scheduler preemption, taint manager, kubelet pressure eviction);
# the attempt Jobs fail on it by name (builder's podFailurePolicy).
DISRUPTION = "DisruptionTarget"
MAX_PREEMPTIONS = 10  # then the job fails: a cluster that keeps taking its nodes
# A queued Job stopped before Kueue made its Workload: how long the stop waits
# for the Workload (to deactivate it) before it says Stopped anyway.
WORKLOAD_WAIT_SECONDS = 60


@dataclass
class Observed:
    """What the reconciler saw. ``jobs`` and ``pods`` are API dicts (camelCase)."""

    now: datetime
    instance: InstanceType | None = None
    instance_error: str | None = None
    jobs: list[dict[str, Any]] = field(default_factory=list)  # every attempt's Job
    pods: list[dict[str, Any]] = field(default_factory=list)  # the latest attempt's pods
    earlier_pods: list[dict[str, Any]] = field(default_factory=list)  # earlier attempts' (billing)
    final_metrics: dict[str, float] | None = None  # read once the latest Job finished
    stored: frozenset[str] = frozenset()  # artifact URIs that exist in the store
    artifacts: ArtifactURIs | None = None
    workload: dict[str, Any] | None = None  # Kueue's Workload of the latest Job (cache.trim_workload)
    kueue: bool = False  # the Kueue integration is on: Workloads are watched


@dataclass
class Decision:
    status: TrainingJobStatus
    extra: dict[str, Any] = field(default_factory=dict)  # controller-only status fields
    create_attempt: int | None = None
    deadline_seconds: int = 0
    suspend_job: str | None = None  # stop: suspend this Job (pods get SIGTERM)
    # stop under Kueue: deactivate this Workload, else Kueue would resume the
    # suspended Job (an admitted Workload's Job runs) or admit it later
    deactivate_workload: str | None = None
    write_status: bool = True  # False: apply the rest, leave the status to the next pass
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)


def stop_requested(job: TrainingJob) -> bool:
    return job.metadata.annotations.get(STOP_ANNOTATION, "").lower() == "true"


def stop_reason(job: TrainingJob) -> str:
    """Why the job was stopped: a tuning job says why it stopped a trial."""
    why = job.metadata.annotations.get(STOP_REASON_ANNOTATION)
    return f"stopped on request: {why}" if why else "stopped on request"


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _fmt(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def attempt_of(job: dict[str, Any]) -> int:
    return int(job["metadata"].get("labels", {}).get(ATTEMPT_LABEL, "0"))


def job_condition(job: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind and c.get("status") == "True":
            return c
    return None


def _job_end(job: dict[str, Any]) -> datetime | None:
    status = job.get("status") or {}
    done = job_condition(job, "Failed") or job_condition(job, "Complete")
    return _ts(status.get("completionTime")) or (_ts(done.get("lastTransitionTime")) if done else None)


def job_seconds(job: dict[str, Any], now: datetime) -> float:
    """How long a Job has been started (what activeDeadlineSeconds counts)."""
    start = _ts((job.get("status") or {}).get("startTime"))
    if start is None:
        return 0.0
    return max(0.0, ((_job_end(job) or now) - start).total_seconds())


def pod_seconds(pod: dict[str, Any], job_end: datetime | None, now: datetime) -> float:
    """How long a pod held its node: from the kubelet taking it (``startTime``)
    to its last container's end (else its Job's end, else now). A pod still
    waiting for a node holds nothing, so a queued job costs nothing."""
    status = pod.get("status") or {}
    start = _ts(status.get("startTime"))
    if start is None:
        return 0.0
    end = None
    if status.get("phase") in ("Succeeded", "Failed"):
        ends = [_ts(term.get("finishedAt"))
                for c in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or [])
                if (term := (c.get("state") or {}).get("terminated"))]
        end = max((e for e in ends if e is not None), default=None)
    end = end or job_end or now
    return max(0.0, (end - start).total_seconds())


def billable_seconds(jobs: list[dict[str, Any]], pods: list[dict[str, Any]], now: datetime) -> int:
    """Node-seconds of every attempt's pods (one GPU host each)."""
    ends = {j["metadata"]["name"]: _job_end(j) for j in jobs}
    return int(sum(pod_seconds(p, ends.get(_pod_job(p)), now) for p in pods))


def _pod_job(pod: dict[str, Any]) -> str:
    return str(((pod.get("metadata") or {}).get("labels") or {}).get("job-name", ""))


def attempt_records(previous: list[AttemptRecord], jobs: list[dict[str, Any]], pods: list[dict[str, Any]],
                    now: datetime) -> list[AttemptRecord]:
    """One record per attempt Job, its cost recomputed from its pods and never
    less than recorded before. An attempt's pods can be gone (an evicted pod is
    deleted; a user may delete them): a single-host attempt then costs its first
    pod's start to its Job's end, a multi-host one what the last pass recorded.
    Outcomes are ``decide``'s; a record of a finished attempt is kept as it was."""
    by_number = {r.attempt: r for r in previous}
    out = []
    for job in sorted(jobs, key=attempt_of):
        number = attempt_of(job)
        record = by_number.get(number, AttemptRecord(attempt=number)).model_copy()
        if record.outcome != "Active":  # finished: its figure is final
            out.append(record)
            continue
        name, end = job["metadata"]["name"], _job_end(job)
        mine = [p for p in pods if _pod_job(p) == name]
        starts = [s for p in mine if (s := (p.get("status") or {}).get("startTime"))]
        if starts:
            record.start_time = min([*starts, *([record.start_time] if record.start_time else [])])
        seconds = sum(pod_seconds(p, end, now) for p in mine)
        count = int((job.get("spec") or {}).get("parallelism") or 1)
        if not mine and end is not None and record.start_time and count == 1:
            seconds = max(0.0, (end - _ts(record.start_time)).total_seconds())  # type: ignore[operator]
        record.billable_seconds = max(record.billable_seconds, int(seconds))
        out.append(record)
    return out


def _without_the_clock(status: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in status.items() if k != "billableSeconds"}
    if "attemptHistory" in out:
        out["attemptHistory"] = [{k: v for k, v in r.items() if k != "billableSeconds"}
                                 for r in out["attemptHistory"]]
    return out


def only_the_clock(old: dict[str, Any], new: dict[str, Any], tolerance: float) -> bool:
    """Whether two status dicts differ only by less than ``tolerance`` billable
    seconds (the total, and so the running attempt's). A running job's figure
    changes with every pass; it is written when it has grown by about a requeue
    interval (the clock's own pass), not on every pod or Job event in between.
    A finished job's final figure always lands: its phase changes in the same write."""
    if new == old or _without_the_clock(old) != _without_the_clock(new):
        return False
    return bool(new.get("billableSeconds", 0) - old.get("billableSeconds", 0) < tolerance)


def _container(statuses: list[dict[str, Any]] | None, name: str) -> dict[str, Any]:
    return next((s for s in statuses or [] if s.get("name") == name), {})


def pod_failure(pod: dict[str, Any]) -> str | None:
    """Why a pod failed: the trainer's termination message (the failure file),
    the stage-in container's, or the exit code."""
    status = pod.get("status") or {}
    for name, key in ((TRAINER, "containerStatuses"), (STAGE_IN, "initContainerStatuses")):
        term = (_container(status.get(key), name).get("state") or {}).get("terminated")
        if term and term.get("exitCode", 0) != 0:
            reason = read_failure_reason(term.get("message") or "")
            if reason:
                return reason
            what = "trainer" if name == TRAINER else "stage-in"
            return f"{what} exited with code {term['exitCode']} ({term.get('reason', 'Error')}) and wrote no failure file"
    if status.get("phase") == "Failed":
        return status.get("message") or status.get("reason") or "pod failed"
    return None


def disruption(pod: dict[str, Any]) -> str | None:
    """Why Kubernetes took this pod away (its ``DisruptionTarget`` condition),
    or None: the pod was not evicted or preempted."""
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == DISRUPTION and c.get("status") == "True":
            return f"{c.get('reason') or 'Disrupted'}: {c.get('message') or 'the pod was evicted'}"
    return None


def preemption(failed: dict[str, Any], pods: list[dict[str, Any]]) -> str | None:
    """Why an attempt's failed Job was preempted, or None when its code failed.
    The evicted pod says it while it lasts; once it is deleted the Job's own
    condition still does (the podFailurePolicy rule named ``DisruptionTarget``)."""
    for pod in pods:
        why = disruption(pod)
        if why:
            return why
    message = failed.get("message") or ""
    if failed.get("reason") == "PodFailurePolicy" and DISRUPTION in message:
        return f"{DISRUPTION}: {message}"
    return None


def pod_active(pod: dict[str, Any]) -> bool:
    """The pod still runs a container (being deleted or not): its stage-out may
    be under way."""
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def awaiting_workload(job: TrainingJob, latest: dict[str, Any], observed: Observed) -> bool:
    """A queued Job whose Workload Kueue has not made yet (normally milliseconds
    after the Job), within ``WORKLOAD_WAIT_SECONDS`` of its creation."""
    if not observed.kueue or observed.workload is not None or not job.metadata.labels.get(QUEUE_LABEL):
        return False
    created = _ts((latest.get("metadata") or {}).get("creationTimestamp"))
    return created is not None and (observed.now - created).total_seconds() < WORKLOAD_WAIT_SECONDS


def kueue_state(workload: dict[str, Any] | None, queue: str) -> tuple[str, str]:
    """Why Kueue holds a Job, as (reason, message): its Workload's conditions
    in Kueue's own words (``QuotaReserved`` False says what is missing, e.g.
    "couldn't assign flavors to pod set main: insufficient unused quota for
    nvidia.com/gpu in flavor gpu, 1 more needed")."""
    if workload is None:
        return "WaitingForWorkload", f"waiting for Kueue to queue it in LocalQueue {queue}"
    conditions = {c.get("type"): c for c in (workload.get("status") or {}).get("conditions") or []}
    cluster_queue = (workload.get("status") or {}).get("clusterQueue")

    def true(kind: str) -> dict[str, Any] | None:
        c = conditions.get(kind)
        return c if c and c.get("status") == "True" else None

    if (workload.get("spec") or {}).get("active") is False:
        return "Deactivated", "its Kueue Workload is deactivated"
    if evicted := true("Evicted"):
        return str(evicted.get("reason") or "Evicted"), f"evicted by Kueue: {evicted.get('message') or ''}".strip()
    if true("Admitted"):
        return "Admitted", f"admitted by Kueue to ClusterQueue {cluster_queue}"
    if true("QuotaReserved"):
        return "QuotaReserved", f"quota reserved in ClusterQueue {cluster_queue}; waiting for its admission checks"
    quota = conditions.get("QuotaReserved") or {}
    return str(quota.get("reason") or "Pending"), str(quota.get("message") or f"pending in LocalQueue {queue}")


def pod_phase(pod: dict[str, Any]) -> tuple[Phase, str]:
    status = pod.get("status") or {}
    for c in status.get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("status") == "False":
            return Phase.QUEUED, c.get("message") or "waiting for a node"
    if status.get("phase") == "Succeeded":
        return Phase.UPLOADING, "trainer finished; uploading"
    trainer = (_container(status.get("containerStatuses"), TRAINER).get("state") or {})
    if "terminated" in trainer:
        return Phase.UPLOADING, "trainer finished; uploading"
    if "running" in trainer:
        return Phase.TRAINING, "training"
    stage_in = (_container(status.get("initContainerStatuses"), STAGE_IN).get("state") or {})
    if "running" in stage_in:
        return Phase.STAGING, "downloading input channels"
    if not status.get("phase") or not (pod.get("spec") or {}).get("nodeName"):
        return Phase.PENDING, "waiting for the scheduler"
    return Phase.STAGING, "preparing the pod"


def decide(job: TrainingJob, observed: Observed,  # noqa: C901 - one table of cases
           max_preemptions: int = MAX_PREEMPTIONS) -> Decision:
    now = observed.now
    previous = job.status or TrainingJobStatus()
    status = previous.model_copy(deep=True)
    count = job.spec.instance.count
    extra: dict[str, Any] = {}
    if observed.instance is not None:
        extra["gpus"] = observed.instance.gpus * count
    decision = Decision(status=status, extra=extra)
    if previous.phase.finished:  # terminal: keep what was recorded
        return decision

    def become(phase: Phase, message: str, reason: str | None = None) -> None:
        status.phase, status.message = phase, message
        if reason is not None:
            status.failure_reason = reason
        if phase.finished:
            status.end_time = status.end_time or _fmt(now)
        if phase.finished:
            status.conditions = enter_phase(status.conditions, phase.value, message, now)
        if phase != previous.phase:
            decision.events.append(("Warning" if phase == Phase.FAILED else "Normal", phase.value, message))

    if observed.instance is None:
        become(Phase.FAILED, observed.instance_error or "unknown instance type", observed.instance_error)
        return decision

    jobs = sorted(observed.jobs, key=attempt_of)
    latest = jobs[-1] if jobs else None
    status.attempts = attempt_of(latest) if latest else 0
    status.attempt_history = attempt_records(previous.attempt_history, jobs,
                                             observed.earlier_pods + observed.pods, now)
    current = status.attempt_history[-1] if status.attempt_history else None
    if current is not None and current.outcome == "Active":
        # Kept while the evicted pod lasts: once it is deleted, only the Job's
        # terser condition would say why.
        current.reason = next((why for p in observed.pods if (why := disruption(p))), current.reason)

    def settle() -> None:
        # Never less than recorded: an earlier attempt's pods may since have been deleted.
        status.billable_seconds = max(previous.billable_seconds,
                                      billable_seconds(jobs, observed.earlier_pods + observed.pods, now),
                                      sum(r.billable_seconds for r in status.attempt_history))

    def end_attempt(outcome: str, reason: str | None) -> None:
        if current is not None and current.outcome == "Active":
            current.outcome, current.reason = outcome, reason  # type: ignore[assignment]
            end = _job_end(latest) if latest else None
            current.end_time = _fmt(end or now)

    settle()
    # Started: when a pod first got a node (a queued job has not started).
    starts = [s for p in observed.earlier_pods + observed.pods if (s := (p.get("status") or {}).get("startTime"))]
    if starts and not status.start_time:
        status.start_time = min(starts)
    elapsed = sum(job_seconds(j, now) for j in jobs)
    stopping = stop_requested(job)

    if latest is None:
        if stopping:
            become(Phase.STOPPED, "stopped before any pod was created", stop_reason(job))
        else:
            decision.create_attempt = status.attempts = 1
            decision.deadline_seconds = job.spec.stopping.max_runtime_seconds
            # A new job's wait is for its Job; its first status comes with the
            # pass that the Job's watch event brings (one write fewer per job
            # on the path a burst of submissions is waiting on).
            decision.write_status = False
            become(Phase.PENDING, "creating attempt 1")
        return decision
    created = _ts(latest["metadata"].get("creationTimestamp")) or now
    status.conditions = set_condition(status.conditions, "Created", "True", "JobCreated",
                                      f"attempt {status.attempts} created", created)

    complete = job_condition(latest, "Complete")
    failed = job_condition(latest, "Failed")
    spec_of = latest.get("spec") or {}
    active = (latest.get("status") or {}).get("active") or 0

    def retry(reason: str, preempted: bool) -> None:
        decision.create_attempt = status.attempts + 1
        decision.deadline_seconds = job.spec.stopping.max_runtime_seconds - int(elapsed)
        what = "was preempted" if preempted else "failed"
        become(Phase.PENDING, f"attempt {status.attempts} {what} ({reason}); "
                              f"{'resuming' if preempted else 'retrying'} as attempt {status.attempts + 1}")
        if preempted:
            decision.events.append(("Warning", "Preempted", f"attempt {status.attempts} {what}: {reason}"))
        status.attempts += 1
        status.failure_reason = None

    queue = job.metadata.labels.get(QUEUE_LABEL)
    if queue and not spec_of.get("suspend"):  # resumed: Kueue admitted it (it may have finished since)
        reason, message = kueue_state(observed.workload, queue)
        status.conditions = set_condition(status.conditions, "Admitted", "True", "Admitted",
                                          message if reason == "Admitted" else "admitted by Kueue", now)
    if complete:
        end_attempt("Completed", None)
        _record_results(job, observed, status, completed=True)
        become(Phase.COMPLETED, "training finished")
    elif failed:
        reasons = [r for p in observed.pods if (r := pod_failure(p))]
        preempted = preemption(failed, observed.pods)
        if preempted and current is not None and current.reason:
            preempted = current.reason
        if stopping:
            end_attempt("Stopped", stop_reason(job))
            become(Phase.STOPPED, stop_reason(job), stop_reason(job))
        elif failed.get("reason") == "DeadlineExceeded":
            reason = (f"MaxRuntimeExceeded: training ran past spec.stopping.maxRuntimeSeconds="
                      f"{job.spec.stopping.max_runtime_seconds}")
            end_attempt("Stopped", reason)
            _record_results(job, observed, status)
            become(Phase.FAILED, reason, reason)
        elif preempted:
            # Not the code's failure: the retry budget is for those. A new attempt
            # resumes from the checkpoints the evicted pods' stage-out uploaded.
            end_attempt("Preempted", preempted)
            times = sum(1 for r in status.attempt_history if r.outcome == "Preempted")
            remaining = job.spec.stopping.max_runtime_seconds - int(elapsed)
            if times <= max_preemptions and remaining > 0:
                retry(preempted, preempted=True)
            else:
                reason = (f"preempted {times} times (at most {max_preemptions} are resumed): {preempted}"
                          if remaining > 0 else
                          f"MaxRuntimeExceeded: preempted ({preempted}) with no time left of "
                          f"spec.stopping.maxRuntimeSeconds={job.spec.stopping.max_runtime_seconds}")
                _record_results(job, observed, status)
                become(Phase.FAILED, reason, reason)
        else:
            reason = reasons[0] if reasons else (failed.get("message") or failed.get("reason") or "Job failed")
            end_attempt("Failed", reason)
            remaining = job.spec.stopping.max_runtime_seconds - int(elapsed)
            failures = sum(1 for r in status.attempt_history if r.outcome == "Failed")
            if failures < job.spec.retry.max_attempts and remaining > 0:
                retry(reason, preempted=False)
            else:
                _record_results(job, observed, status)
                become(Phase.FAILED, reason, reason)
    elif stopping:
        if not spec_of.get("suspend"):
            decision.suspend_job = latest["metadata"]["name"]
        workload = observed.workload
        if workload is not None and (workload.get("spec") or {}).get("active") is not False:
            decision.deactivate_workload = workload["metadata"]["name"]
        if awaiting_workload(job, latest, observed):
            # Stopped now, Kueue would still make the Workload and may admit
            # (resume) the Job under a Stopped job; its watch brings the next pass.
            status.message = "stopping: waiting for Kueue's Workload to deactivate it"
        elif active or any(pod_active(p) for p in observed.pods):
            # Stopped only once every pod is over: the sidecar uploads the final
            # checkpoint, outputs and metrics while the pod terminates.
            status.message = "stopping: the pods got SIGTERM and are saving and uploading"
        else:
            end_attempt("Stopped", stop_reason(job))
            _record_results(job, observed, status)
            become(Phase.STOPPED, stop_reason(job), stop_reason(job))
    elif spec_of.get("suspend"):
        status.conditions = set_condition(status.conditions, "Suspended", "True", "Suspended",
                                          "waiting for admission (Kueue) or spec.suspend", now)
        if queue:
            reason, message = kueue_state(observed.workload, queue)
            status.conditions = set_condition(status.conditions, "Admitted", "False", reason, message, now)
            become(Phase.QUEUED, f"suspended until Kueue admits it (LocalQueue {queue}): {message}")
        else:
            become(Phase.QUEUED, "suspended: waiting for admission (Kueue) or spec.suspend=false")
    else:
        if any(c.type == "Suspended" for c in status.conditions):
            status.conditions = set_condition(status.conditions, "Suspended", "False", "Admitted",
                                              "admitted", now)
        phases = [pod_phase(p) for p in observed.pods
                  if (p.get("status") or {}).get("phase") not in ("Failed",)]
        if not phases:
            become(Phase.PENDING, "waiting for the scheduler")  # as a pod not yet bound: one write
        else:
            queued = [m for ph, m in phases if ph == Phase.QUEUED]
            if queued:
                status.conditions = set_condition(status.conditions, "Scheduled", "False",
                                                  "Unschedulable", queued[0], now)
                become(Phase.QUEUED, f"not enough capacity: {queued[0]}")
            else:
                if all(ph != Phase.PENDING for ph, _ in phases):  # not before the scheduler has spoken
                    status.conditions = set_condition(status.conditions, "Scheduled", "True",
                                                      "Scheduled", "every host has a node", now)
                phase, message = min(phases, key=lambda pm: _ORDER.index(pm[0]))
                become(phase, message)
    if decision.create_attempt is not None:
        status.attempt_history.append(AttemptRecord(attempt=decision.create_attempt))
    settle()
    return decision


def _record_results(job: TrainingJob, observed: Observed, status: TrainingJobStatus,
                    completed: bool = False) -> None:
    """Metrics, logs and checkpoints always; the model and output data only for a
    completed job (a failed or stopped one may have uploaded partial files)."""
    metrics = observed.final_metrics or {}
    status.final_metrics = dict(metrics)
    art = observed.artifacts
    if art is not None:
        stored = observed.stored
        status.artifacts.model = art.model if completed and art.model in stored else None
        status.artifacts.output = art.output if completed and art.output in stored else None
        status.artifacts.metrics = art.metrics if art.metrics in stored else None
        status.artifacts.logs = art.logs
    if job.spec.checkpoints:
        status.artifacts.checkpoints = job.spec.checkpoints.uri


def headline_metric(job: TrainingJob, metrics: dict[str, float]) -> str | None:
    names = [m.name for m in job.spec.metrics if m.name in metrics] or sorted(metrics)
    return f"{names[0]}={metrics[names[0]]:.6g}" if names else None
