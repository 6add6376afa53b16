"""RetrainingPolicy without a cluster: the spec's checks, cron schedules, and
the controller's pure decisions (triggers, Forbid/Replace, history bounds)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError
from trainforge.cron import parse_cron
from trainforge.spec.retraining import RetrainingPolicy
from trainforge_controller.retraining.decide import Child, Observed, child_name, data_check_due, decide, record

T0 = datetime(2026, 12, 7, 2, 0, tzinfo=timezone.utc)  # a Monday


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


@pytest.mark.parametrize("expr, after, expected", [
    ("0 3 * * 1", T0, datetime(2026, 12, 7, 3, 0, tzinfo=timezone.utc)),
    ("0 3 * * 1", datetime(2026, 12, 7, 3, 0, tzinfo=timezone.utc), datetime(2026, 12, 14, 3, 0, tzinfo=timezone.utc)),
    ("*/15 * * * *", at(1), at(15)),
    ("@daily", T0, datetime(2026, 12, 8, 0, 0, tzinfo=timezone.utc)),
    ("0 0 13 * 5", T0, datetime(2026, 12, 11, 0, 0, tzinfo=timezone.utc)),  # the 13th or a Friday
    ("0 0 1 1 *", T0, datetime(2027, 1, 1, tzinfo=timezone.utc)),
    ("30 2 31 2 *", T0, None),                                               # February 31st never comes
])
def test_cron_next(expr: str, after: datetime, expected: datetime | None) -> None:
    assert parse_cron(expr).next_after(after) == expected


@pytest.mark.parametrize("expr", ["", "* * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "*/0 * * * *",
                                  "a * * * *", "5-1 * * * *"])
def test_bad_cron(expr: str) -> None:
    with pytest.raises(ValueError, match="cron"):
        parse_cron(expr)


def policy(**spec: object) -> RetrainingPolicy:
    template = {"image": "reg/digits:1", "inputs": [{"channel": "train", "uri": "s3://data/digits/"}],
                "metrics": [{"name": "validation:accuracy", "regex": "val_acc=([0-9.]+)"}]}
    return RetrainingPolicy.model_validate({"metadata": {"name": "digits", "namespace": "team-a"}, "spec": {
        "trainingJobTemplate": template, "gate": {"metric": "validation:accuracy", "min": 0.9},
        "model": {"name": "digits", "promoteTo": "production"}, **spec}})


@pytest.mark.parametrize("spec, message", [
    ({}, "needs a schedule, a dataTrigger or both"),
    ({"schedule": "61 * * * *"}, "cron minute"),
    ({"schedule": "@daily", "gate": {"metric": "test:acc", "min": 0.5}}, "not one of the template's metrics"),
    ({"schedule": "@daily", "gate": {"metric": "validation:accuracy"}}, "needs min, max or maxRegression"),
    ({"schedule": "@daily", "model": {"name": "../x"}}, "spec.model.name"),
    ({"schedule": "@daily", "concurrencyPolicy": "Allow"}, "concurrencyPolicy"),
])
def test_invalid_policies(spec: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(")):
        policy(**spec)


def test_schedule_fires_once_for_missed_times_and_forbid_skips() -> None:
    p = policy(schedule="0 * * * *")
    first = decide(p, Observed(T0))
    assert first.create is None and first.status.last_schedule_time == "2026-12-07T02:00:00Z"
    assert first.requeue_after == 3600
    p.status = first.status
    late = decide(p, Observed(at(185)))  # 03:00, 04:00 and 05:00 missed: one run, for 05:00
    assert late.create == "digits-1" and late.trigger == "schedule 2026-12-07T05:00:00Z"
    assert late.status.active == "digits-1" and late.status.history[0].phase == "Pending"
    p.status = late.status
    busy = decide(p, Observed(at(245), {"digits-1": Child("digits-1", "Training")}))
    assert busy.create is None and busy.stop is None  # Forbid: 06:00 is dropped
    assert busy.status.last_schedule_time == "2026-12-07T06:00:00Z"
    assert busy.status.history[0].phase == "Training"


def test_replace_stops_the_running_child() -> None:
    p = policy(schedule="0 * * * *", concurrencyPolicy="Replace")
    p.status = decide(p, Observed(T0)).status
    p.status = decide(p, Observed(at(60))).status
    replaced = decide(p, Observed(at(120), {"digits-1": Child("digits-1", "Training")}))
    assert replaced.stop == "digits-1" and replaced.create == "digits-2"
    assert [(r.job, r.phase) for r in replaced.status.history] == [("digits-2", "Pending"), ("digits-1", "Stopped")]


def test_new_data_fires_and_a_forbidden_data_trigger_stays_pending() -> None:
    p = policy(dataTrigger={"checkIntervalSeconds": 300})
    assert data_check_due(p, T0)
    first = decide(p, Observed(T0, data_digest="aaa"))
    assert first.create == "digits-1" and first.trigger == "new data aaa"
    p.status = first.status
    assert not data_check_due(p, at(4)) and data_check_due(p, at(5))
    same = decide(p, Observed(at(5), {"digits-1": Child("digits-1", "Failed")}, data_digest="aaa"))
    assert same.create is None and same.status.active is None  # unchanged data: nothing to do
    p.status = same.status
    p.status.active = "digits-1"  # pretend it still runs
    held = decide(p, Observed(at(10), {"digits-1": Child("digits-1", "Training")}, data_digest="bbb"))
    assert held.create is None and held.status.data_digest == "aaa"
    p.status = held.status
    done = decide(p, Observed(at(15), {"digits-1": Child("digits-1", "Failed")}, data_digest="bbb"))
    assert done.create == "digits-2" and done.status.data_digest == "bbb"


def test_a_completed_run_is_gated_then_recorded_and_history_is_bounded() -> None:
    p = policy(schedule="*/5 * * * *", historyLimit=2)
    p.status = decide(p, Observed(T0)).status
    for n in range(1, 4):
        started = decide(p, Observed(at(5 * n)))
        assert started.create == f"digits-{n}"
        p.status = started.status
        gated = decide(p, Observed(at(5 * n + 1), {f"digits-{n}": Child(f"digits-{n}", "Completed")}))
        assert gated.to_gate == f"digits-{n}" and gated.create is None
        p.status = record(gated.status, f"digits-{n}", passed=n != 2, gate="validation:accuracy = 0.95",
                          version=n if n != 2 else None, promoted=n != 2)
        assert p.status.active is None
    assert [(r.job, r.version, r.promoted) for r in p.status.history] == [("digits-3", 3, True),
                                                                          ("digits-2", None, False)]
    assert p.status.history[1].gate == "failed: validation:accuracy = 0.95"


def test_suspended_and_deleted() -> None:
    p = policy(schedule="* * * * *", suspend=True)
    assert decide(p, Observed(T0)).requeue_after is None
    p = policy(schedule="0 0 1 1 *")
    p.status = decide(p, Observed(T0)).status
    p.status.active = "digits-1"
    p.status.history = []
    gone = decide(p, Observed(at(1)))
    assert gone.status.active is None
    assert child_name("x" * 63, 12) == "x" * 50 + "-12"
