"""How the CLI shows jobs: rich tables for people, JSON for scripts. Pure
formatting; no backend calls."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from rich.table import Table

from .._time import parse_time
from ..spec import Phase, TrainingJob

PHASE_STYLE = {
    Phase.COMPLETED: "green", Phase.FAILED: "red", Phase.STOPPED: "yellow",
    Phase.TRAINING: "cyan", Phase.UPLOADING: "cyan", Phase.STAGING: "blue",
    Phase.QUEUED: "magenta", Phase.PENDING: "white",
}


def age(start: str | None, now: datetime | None = None) -> str:
    if not start:
        return "-"
    seconds = int(((now or datetime.now(timezone.utc)) - parse_time(start)).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def headline_metric(job: TrainingJob) -> str:
    status = job.status
    if status is None or not status.final_metrics:
        return "-"
    names = [m.name for m in job.spec.metrics] or sorted(status.final_metrics)
    for name in names:
        if name in status.final_metrics:
            return f"{name}={status.final_metrics[name]:.4g}"
    name, value = next(iter(sorted(status.final_metrics.items())))
    return f"{name}={value:.4g}"


def jobs_table(jobs: list[TrainingJob]) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("NAME", "PHASE", "INSTANCE", "ATTEMPTS", "METRIC", "AGE"):
        table.add_column(column)
    for job in jobs:
        status = job.status
        phase = status.phase if status else Phase.PENDING
        table.add_row(
            job.name, f"[{PHASE_STYLE[phase]}]{phase.value}[/]",
            f"{job.spec.instance.type} x{job.spec.instance.count}",
            str(status.attempts if status else 0), headline_metric(job),
            age(status.start_time if status else None),
        )
    return table


def status_document(job: TrainingJob) -> dict[str, Any]:
    return job.to_dict()


def status_lines(job: TrainingJob) -> list[str]:
    status = job.status
    assert status is not None
    style = PHASE_STYLE[status.phase]
    lines = [
        f"[bold]{job.name}[/]  [{style}]{status.phase.value}[/]  {status.message}",
        f"  image:     {job.spec.image}",
        f"  instance:  {job.spec.instance.type} x{job.spec.instance.count}",
        f"  attempts:  {status.attempts} of {job.spec.retry.max_attempts}",
        f"  started:   {status.start_time or '-'}   ended: {status.end_time or '-'}   billable: {status.billable_seconds}s",
    ]
    if status.failure_reason:
        lines.append(f"  [red]reason:[/]    {status.failure_reason}")
    for name, value in sorted(status.final_metrics.items()):
        lines.append(f"  metric:    {name} = {value:.6g}")
    for kind, uri in status.artifacts.model_dump(exclude_none=True).items():
        lines.append(f"  {kind + ':':<10} {uri}")
    return lines


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, default=str)


_CONTROL = {c: "?" for c in [*range(0, 9), *range(11, 32), 127, *range(0x80, 0xA0)]}


def safe(text: str) -> str:
    """User data without terminal control characters (escape sequences could
    rewrite the screen); tabs and newlines stay."""
    return text.translate(_CONTROL)
