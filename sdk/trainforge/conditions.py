"""The one status dialect of local and cluster jobs (TrainingJobs and
TuningJobs alike): Kubernetes-style conditions, one per type, whose
``lastTransitionTime`` changes only when their status does. Pure.

Conditions say what holds, not the phase history (the phase, the start and
end times and the attempts say that). The same types in both worlds:

TrainingJob  Created    its runtime exists (cluster: the attempt's Job; local:
                        the supervisor started the attempt)
             Scheduled  every host has a machine (cluster: the scheduler
                        bound every pod, False while they wait for capacity;
                        local: this machine)
             Completed / Failed / Stopped   the phase that ended it
             Suspended, Admitted   only for what exists only on a cluster
                        (``spec.suspend``, Kueue admission)
TuningJob    Running    trials are being started or run (False once it ended)
             Completed / Failed / Stopped   the phase that ended it
"""

from __future__ import annotations

from datetime import datetime, timezone

from .spec.models import Condition

TRAINING_CONDITIONS = ("Created", "Scheduled", "Suspended", "Admitted", "Completed", "Failed", "Stopped")
TUNING_CONDITIONS = ("Running", "Completed", "Failed", "Stopped")
ENDS = ("Completed", "Failed", "Stopped")


def _when(now: datetime | str) -> str:
    if isinstance(now, str):
        return now
    return now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(conditions: list[Condition], kind: str, status: str, reason: str,
                  message: str, now: datetime | str) -> list[Condition]:
    """``conditions`` with ``kind`` set; its lastTransitionTime kept when only
    the reason or message changed."""
    out = []
    found = False
    for c in conditions:
        if c.type == kind:
            found = True
            when = c.last_transition_time if c.status == status else _when(now)
            c = Condition(type=kind, status=status, reason=reason, message=message,  # type: ignore[arg-type]
                          last_transition_time=when)
        out.append(c)
    if not found:
        out.append(Condition(type=kind, status=status, reason=reason, message=message,  # type: ignore[arg-type]
                             last_transition_time=_when(now)))
    return out


def enter_phase(conditions: list[Condition], phase: str, message: str, now: datetime | str) -> list[Condition]:
    """``conditions`` once ``phase`` has been entered."""
    return set_condition(conditions, phase, "True", phase, message, now)


def started_locally(conditions: list[Condition], now: datetime | str) -> list[Condition]:
    """A local job's supervisor started its hosts: its runtime exists and its
    hosts are this machine (the cluster's ``Created`` and ``Scheduled``)."""
    conditions = set_condition(conditions, "Created", "True", "Started", "the supervisor started the job", now)
    return set_condition(conditions, "Scheduled", "True", "Scheduled", "runs on this machine", now)


def tuning_phase(conditions: list[Condition], phase: str, message: str, now: datetime | str) -> list[Condition]:
    """A tuning job's conditions in ``phase`` (local supervisor and controller alike)."""
    running = phase == "Running"
    conditions = set_condition(conditions, "Running", "True" if running else "False",
                               "TrialsActive" if running else phase, message, now)
    if phase in ENDS:
        conditions = enter_phase(conditions, phase, message, now)
    return conditions
