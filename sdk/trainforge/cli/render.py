"""How the CLI shows jobs: rich tables for people, JSON for scripts. Pure
formatting; no backend calls.

Everything a job's author or its trainer controls (messages, failure reasons,
metric names, images, error texts) goes through ``printable`` (or ``safe``
where rich markup is on) before it reaches a terminal: a terminal escape
sequence in a failure reason must not repaint the reader's screen, and a
``[/]`` in it must not crash rich's markup parser. JSON output needs nothing:
``json.dumps`` escapes control characters itself.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any

from rich.markup import escape
from rich.table import Table

from .._time import parse_time
from ..errors import InvalidJobName, SpecError
from ..spec import Phase, TrainingJob

# C0 and C1 controls (ESC, CR, newline, backspace, ...), DEL, line/paragraph
# separators and the bidirectional overrides that reorder what a reader sees.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: object) -> str:
    """``text`` as one inert line: control characters shown as ``\\x1b`` etc."""
    return _UNPRINTABLE.sub(_escaped, str(text))


def safe(text: object) -> str:
    """``printable`` and escaped for rich markup, for strings printed with markup on."""
    return escape(printable(text))


def error_text(exc: BaseException) -> str:
    """An error as the CLI prints it: one line; a spec with several problems
    gets one summary line and one line per problem, each with its field path."""
    if isinstance(exc, SpecError) and not isinstance(exc, InvalidJobName) and exc.issues:
        where = f"{printable(exc.source)}: " if exc.source else ""
        if len(exc.issues) == 1:
            return f"{where}invalid job spec: {printable(exc.issues[0])}"
        lines = [f"{where}invalid job spec ({len(exc.issues)} problems):"]
        lines += [f"  - {printable(issue)}" for issue in exc.issues]
        return "\n".join(lines)
    return printable(exc)

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
            safe(job.name), f"[{PHASE_STYLE[phase]}]{phase.value}[/]",
            safe(f"{job.spec.instance.type} x{job.spec.instance.count}"),
            str(status.attempts if status else 0), safe(headline_metric(job)),
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
        f"[bold]{safe(job.name)}[/]  [{style}]{status.phase.value}[/]  {safe(status.message)}",
        f"  image:     {safe(job.spec.image)}",
        f"  instance:  {safe(job.spec.instance.type)} x{job.spec.instance.count}",
        f"  attempts:  {status.attempts} of {job.spec.retry.max_attempts}",
        f"  started:   {safe(status.start_time or '-')}   ended: {safe(status.end_time or '-')}"
        f"   billable: {status.billable_seconds}s",
    ]
    if status.failure_reason:
        lines.append(f"  [red]reason:[/]    {safe(status.failure_reason)}")
    for record in status.attempt_history:  # the cluster path: why each attempt ended
        why = f"  {safe(record.reason)}" if record.reason else ""
        lines.append(f"  attempt {record.attempt}: {record.outcome} {record.billable_seconds}s{why}")
    for name, value in sorted(status.final_metrics.items()):
        lines.append(f"  metric:    {safe(name)} = {value:.6g}")
    for kind, uri in status.artifacts.model_dump(exclude_none=True).items():
        lines.append(f"  {kind + ':':<10} {safe(uri)}")
    return lines


def to_json(data: Any, indent: int | None = 2) -> str:
    return json.dumps(data, indent=indent, default=str)
