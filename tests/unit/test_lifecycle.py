"""Pure decisions of a local job: what an attempt's end means (judge), and how
the metric series of a job is merged (merge_records)."""

from __future__ import annotations

import pytest
from trainforge.backends.local.lifecycle import AttemptEnd, Verdict, judge
from trainforge.backends.local.records import merge_records
from trainforge.metrics import MetricRecord
from trainforge.spec import Phase

MAX_RUNTIME = 600

JUDGE = [
    # (attempt end, attempt, max attempts, phase (None: retry), reason)
    (AttemptEnd(0), 1, 1, Phase.COMPLETED, None),
    (AttemptEnd(0), 2, 3, Phase.COMPLETED, None),
    (AttemptEnd(0, failure_text="ignored on success"), 1, 1, Phase.COMPLETED, None),
    (AttemptEnd(1, failure_text="ValueError: bad lr"), 1, 1, Phase.FAILED, "ValueError: bad lr"),
    (AttemptEnd(1, failure_text="ValueError: bad lr"), 1, 2, None, "ValueError: bad lr"),
    (AttemptEnd(1, failure_text="ValueError: bad lr"), 2, 2, Phase.FAILED, "ValueError: bad lr"),
    (AttemptEnd(3), 1, 1, Phase.FAILED, "trainer exited with code 3 and wrote no failure file"),
    (AttemptEnd(3, last_output="ModuleNotFoundError: No module named 'tensorflow'"), 1, 1, Phase.FAILED,
     ("trainer exited with code 3 and wrote no failure file; "
      "last output line: ModuleNotFoundError: No module named 'tensorflow'")),
    (AttemptEnd(-15, output_error="cannot write /h/log: disk full"), 1, 3, Phase.FAILED, "cannot write /h/log: disk full"),
    (AttemptEnd(-15, stopped=True, output_error="cannot write /h/log"), 1, 1, Phase.STOPPED, "stopped on request"),
    (AttemptEnd(-9), 1, 1, Phase.FAILED, "trainer was killed by signal 9 (exit code -9)"),
    (AttemptEnd(137), 1, 1, Phase.FAILED, "trainer was killed by signal 9 (exit code 137)"),
    (AttemptEnd(None), 1, 1, Phase.FAILED, "trainer ended without an exit code"),
    # a stop request wins over everything, even a trainer that exited 0 meanwhile
    (AttemptEnd(143, stopped=True), 1, 3, Phase.STOPPED, "stopped on request"),
    (AttemptEnd(0, stopped=True), 1, 1, Phase.STOPPED, "stopped on request"),
    (AttemptEnd(143, stopped=True, failure_text="stopped by SIGTERM after epoch 2 of 9"), 1, 1, Phase.STOPPED,
     "stopped on request; trainer said: stopped by SIGTERM after epoch 2 of 9"),
    # the time limit is for the whole job: never retried
    (AttemptEnd(143, timed_out=True), 1, 3, Phase.FAILED,
     "MaxRuntimeExceeded: training ran past spec.stopping.maxRuntimeSeconds=600"),
    (AttemptEnd(143, timed_out=True, failure_text="stopped by SIGTERM"), 1, 1, Phase.FAILED,
     "MaxRuntimeExceeded: training ran past spec.stopping.maxRuntimeSeconds=600"),
]


@pytest.mark.parametrize(("end", "attempt", "max_attempts", "phase", "reason"), JUDGE)
def test_judge(end: AttemptEnd, attempt: int, max_attempts: int, phase: Phase | None, reason: str | None) -> None:
    assert judge(end, attempt, max_attempts, MAX_RUNTIME) == Verdict(phase, reason)


def test_long_last_output_is_cut() -> None:
    verdict = judge(AttemptEnd(1, last_output="x" * 5000), 1, 1, MAX_RUNTIME)
    assert verdict.reason is not None and len(verdict.reason) <= 1024


def record(t: float, name: str, value: float, step: int | None = None) -> MetricRecord:
    return MetricRecord(timestamp=t, name=name, value=value, step=step)


def test_merge_records_structured_wins_by_name() -> None:
    scraped = [record(1, "acc", 0.5, 1), record(2, "loss", 0.9, 1), record(3, "acc", 0.6, 2)]
    logged = [record(1.5, "acc", 0.51, 1), record(3.5, "acc", 0.61, 2)]
    merged = merge_records(scraped, logged)
    assert merged == [record(1.5, "acc", 0.51, 1), record(2, "loss", 0.9, 1), record(3.5, "acc", 0.61, 2)]


def test_merge_records_sorts_by_time_then_name() -> None:
    scraped = [record(2, "b", 1), record(1, "z", 1)]
    logged = [record(2, "a", 1), record(0.5, "c", 1)]
    assert [(r.timestamp, r.name) for r in merge_records(scraped, logged)] == [
        (0.5, "c"), (1, "z"), (2, "a"), (2, "b")]


@pytest.mark.parametrize(("scraped", "logged"), [([], []), ([record(1, "a", 1)], []), ([], [record(1, "a", 1)])])
def test_merge_records_either_side_empty(scraped: list[MetricRecord], logged: list[MetricRecord]) -> None:
    assert merge_records(scraped, logged) == scraped + logged
