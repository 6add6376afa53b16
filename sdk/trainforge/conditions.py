"""The one status dialect of local and cluster jobs (TrainingJobs and
TuningJobs alike): Kubernetes-style conditions, one per type, whose
``lastTransitionTime`` changes only when their status does. Pure.

A phase entered is a condition of that name, ``True``, its reason the phase
(``enter_phase``): local jobs record every phase so, the controller the
phases that end a job (its other conditions -- Created, Scheduled,
Suspended, Running -- say what only the cluster knows)."""

from __future__ import annotations

from datetime import datetime, timezone

from .spec.models import Condition


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
