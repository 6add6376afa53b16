"""What a RetrainingPolicy's reconcile pass should do. Pure: the reconciler
observes (its child TrainingJobs, the clock, the inputs' manifest digest when
a data check is due), calls ``decide``, then applies the Decision: create or
stop a child, gate + register + promote a finished one (``trainforge.gate``,
``trainforge.registry``) and ``record`` the outcome, write status once.

Children are named ``<policy>-<n>`` from ``status.runsStarted``: a pass that
created one but died before its status write creates the same name again
(AlreadyExists is success). Triggers: the cron schedule (missed times collapse
into one, as CronJob's) and new data (the manifest digest differs from the one
the last run was given; a Forbid-skipped data trigger stays pending, a skipped
schedule is dropped, as CronJob drops it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from trainforge.cron import parse_cron
from trainforge.spec.retraining import RetrainingPolicy, RetrainingPolicyStatus, RetrainingRun

FINISHED = frozenset({"Completed", "Failed", "Stopped"})
MAX_CHILD_PREFIX = 50  # "<prefix>-<n>" stays a DNS-1123 label


@dataclass(frozen=True)
class Child:
    name: str
    phase: str


@dataclass(frozen=True)
class Observed:
    now: datetime
    children: dict[str, Child] = field(default_factory=dict)
    data_digest: str | None = None  # measured this pass (data_check_due), else None


@dataclass
class Decision:
    status: RetrainingPolicyStatus
    create: str | None = None      # a child TrainingJob to create from the template
    stop: str | None = None        # Replace: the running child to stop
    to_gate: str | None = None     # a child that completed: gate, register, promote, then record()
    trigger: str | None = None
    requeue_after: float | None = None


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def child_name(policy: str, number: int) -> str:
    return f"{policy[:MAX_CHILD_PREFIX].rstrip('-')}-{number}"


def data_check_due(policy: RetrainingPolicy, now: datetime) -> bool:
    trigger = policy.spec.data_trigger
    if trigger is None or policy.spec.suspend:
        return False
    checked = policy.status.data_checked_time if policy.status else None
    return checked is None or now - _parse(checked) >= timedelta(seconds=trigger.check_interval_seconds)


def _update(status: RetrainingPolicyStatus, job: str, **changes: object) -> None:
    status.history = [run.model_copy(update=changes) if run.job == job else run for run in status.history]


def decide(policy: RetrainingPolicy, observed: Observed) -> Decision:
    spec, now = policy.spec, observed.now
    status = (policy.status or RetrainingPolicyStatus()).model_copy(deep=True)
    decision = Decision(status)

    # 1. The active run: follow it; a completed one goes to the gate.
    if status.active is not None:
        child = observed.children.get(status.active)
        if child is None:
            _update(status, status.active, phase="Deleted", message="the TrainingJob was deleted")
            status.active = None
        else:
            _update(status, child.name, phase=child.phase)
            if child.phase == "Completed":
                decision.to_gate = child.name
            elif child.phase in FINISHED:
                status.active = None

    # 2. Triggers (not while a completed run waits for its gate: they fire on the pass after it).
    fired: list[str] = []
    if not spec.suspend and decision.to_gate is None:
        if spec.schedule is not None:
            if status.last_schedule_time is None:
                status.last_schedule_time = _iso(now)  # the schedule counts from the policy's first pass
            else:
                due = parse_cron(spec.schedule).latest_due(_parse(status.last_schedule_time), now)
                if due is not None:
                    status.last_schedule_time = _iso(due)
                    fired.append(f"schedule {_iso(due)}")
        if observed.data_digest is not None:
            status.data_checked_time = _iso(now)
            if observed.data_digest != status.data_digest:
                fired.append(f"new data {observed.data_digest[:12]}")

    # 3. Start a run, if something fired and the concurrency policy lets it.
    busy = status.active is not None and decision.to_gate is None
    if fired and busy and spec.concurrency_policy == "Forbid":
        fired = []  # a data trigger stays pending: its digest is not recorded as given
    if fired:
        if busy:
            assert status.active is not None
            decision.stop = status.active
            _update(status, status.active, phase="Stopped", message="replaced by a newer run")
        status.runs_started += 1
        name = child_name(policy.metadata.name, status.runs_started)
        decision.create, decision.trigger = name, "; ".join(fired)
        status.active = name
        if observed.data_digest is not None:
            status.data_digest = observed.data_digest
        status.history = [RetrainingRun(job=name, trigger=decision.trigger, start_time=_iso(now)),
                          *status.history][:spec.history_limit]

    # 4. When to look again without an event: the next schedule time or data check.
    waits = []
    if spec.schedule is not None and not spec.suspend:
        following = parse_cron(spec.schedule).next_after(now)
        if following is not None:
            waits.append((following - now).total_seconds())
    if spec.data_trigger is not None and not spec.suspend:
        waits.append(float(spec.data_trigger.check_interval_seconds))
    decision.requeue_after = max(1.0, min(waits)) if waits else None
    return decision


def record(status: RetrainingPolicyStatus, job: str, *, passed: bool, gate: str, version: int | None,
           promoted: bool, message: str = "") -> RetrainingPolicyStatus:
    """The gate's verdict and what was registered and promoted, on ``job``'s
    history entry; the run is no longer active."""
    updated = status.model_copy(deep=True)
    _update(updated, job, gate=("passed: " if passed else "failed: ") + gate, version=version,
            promoted=promoted, message=message)
    if updated.active == job:
        updated.active = None
    return updated
