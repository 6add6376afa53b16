"""Pure decisions of a local job's lifecycle: what an attempt's end means.
No I/O, so they are tested as tables."""

from __future__ import annotations

from dataclasses import dataclass

from ...contract import FAILURE_REASON_LIMIT
from ...spec import Phase


@dataclass(frozen=True)
class AttemptEnd:
    exit_code: int | None
    stopped: bool = False       # a stop was requested
    timed_out: bool = False     # maxRuntimeSeconds reached
    failure_text: str | None = None
    last_output: str | None = None  # the trainer's last non-empty output line
    output_error: str | None = None  # its output could not be recorded (a full disk): ended


@dataclass(frozen=True)
class Verdict:
    phase: Phase | None         # None: retry
    reason: str | None


def judge(end: AttemptEnd, attempt: int, max_attempts: int, max_runtime: int) -> Verdict:
    if end.stopped:
        return Verdict(Phase.STOPPED, "stopped on request" + (f"; trainer said: {end.failure_text}" if end.failure_text else ""))
    if end.output_error:  # not retried: a full disk stays full
        return Verdict(Phase.FAILED, end.output_error[:FAILURE_REASON_LIMIT])
    if end.timed_out:
        return Verdict(Phase.FAILED, f"MaxRuntimeExceeded: training ran past spec.stopping.maxRuntimeSeconds={max_runtime}")
    if end.exit_code == 0:
        return Verdict(Phase.COMPLETED, None)
    reason = end.failure_text or _exit_description(end.exit_code, end.last_output)
    if attempt < max_attempts:
        return Verdict(None, reason)
    return Verdict(Phase.FAILED, reason)


def _exit_description(code: int | None, last_output: str | None = None) -> str:
    if code is None:
        text = "trainer ended without an exit code"
    elif code < 0 or code > 128:
        signo = -code if code < 0 else code - 128
        text = f"trainer was killed by signal {signo} (exit code {code})"
    else:
        text = f"trainer exited with code {code} and wrote no failure file"
    if last_output:
        # Usually the exception of a crash that never reached a failure file.
        text += f"; last output line: {last_output}"
    return text[:FAILURE_REASON_LIMIT]
