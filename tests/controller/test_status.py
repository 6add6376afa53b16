"""status.decide: pure (TrainingJob, observed) -> status and actions, as tables."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from trainforge.instances import DEFAULT_CATALOG
from trainforge.spec import Phase, TrainingJob
from trainforge.spec.models import Condition
from trainforge.staging import ArtifactURIs
from trainforge.conditions import set_condition
from trainforge_controller.status import Observed, decide, headline_metric, only_the_clock

NOW = datetime(2026, 1, 1, 12, 0, 10, tzinfo=timezone.utc)
T0 = "2026-01-01T12:00:00Z"


def _tj(annotations: dict[str, str] | None = None, status: dict[str, Any] | None = None,
        **spec: Any) -> TrainingJob:
    return TrainingJob.model_validate({
        "metadata": {"name": "mn", "annotations": annotations or {}},
        "spec": {"image": "i", "instance": {"type": "gpu-8x", "count": 2}, **spec},
        **({"status": status} if status else {})})


def _job(attempt: int = 1, cond: str | None = None, reason: str = "", suspend: bool = False,
         active: int = 0) -> dict[str, Any]:
    status: dict[str, Any] = {"startTime": T0, "active": active}
    if cond:
        status["conditions"] = [{"type": cond, "status": "True", "reason": reason,
                                 "lastTransitionTime": "2026-01-01T12:00:05Z"}]
    return {"metadata": {"name": f"mn-a{attempt}", "labels": {"trainforge.dev/attempt": str(attempt)}},
            "spec": {"suspend": suspend}, "status": status}


def _pod(phase: str = "Running", scheduled: bool = True, trainer: str | None = "running",
         stage_in: str = "terminated", message: str | None = None, exit_code: int = 0) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "conditions": [
        {"type": "PodScheduled", "status": "True" if scheduled else "False",
         "message": None if scheduled else "0/6 nodes are available: 6 Insufficient nvidia.com/gpu."}]}
    if trainer:
        state: dict[str, Any] = {trainer: {}}
        if trainer == "terminated":
            state = {"terminated": {"exitCode": exit_code, "message": message, "reason": "Error"}}
        status["containerStatuses"] = [{"name": "trainer", "state": state}]
    status["initContainerStatuses"] = [{"name": "stage-in", "state": {stage_in: {"exitCode": 0}}}]
    return {"metadata": {"name": "p"}, "spec": {"nodeName": "n" if scheduled else None}, "status": status}


def _obs(**kw: Any) -> Observed:
    return Observed(now=NOW, instance=DEFAULT_CATALOG["gpu-8x"],
                    artifacts=ArtifactURIs.for_job("s3://out/", "default", "mn"), **kw)


@pytest.mark.parametrize(("jobs", "pods", "phase", "message_part"), [
    ([_job(suspend=True)], [], Phase.QUEUED, "suspended"),
    ([_job()], [], Phase.PENDING, "waiting for the scheduler"),
    ([_job()], [_pod(scheduled=True, phase="", trainer=None)], Phase.PENDING, "waiting for the scheduler"),
    ([_job()], [_pod(scheduled=False, phase="Pending", trainer=None)], Phase.QUEUED, "Insufficient nvidia.com/gpu"),
    ([_job()], [_pod(trainer="waiting", stage_in="running")], Phase.STAGING, "downloading"),
    ([_job()], [_pod(), _pod(trainer="waiting", stage_in="running")], Phase.STAGING, ""),
    ([_job()], [_pod(), _pod()], Phase.TRAINING, "training"),
    ([_job()], [_pod(trainer="terminated")], Phase.UPLOADING, "uploading"),
    ([_job(cond="Complete")], [], Phase.COMPLETED, "finished"),
    ([_job(cond="Failed", reason="DeadlineExceeded")], [], Phase.FAILED, "MaxRuntimeExceeded"),
])
def test_phase_table(jobs: list[dict[str, Any]], pods: list[dict[str, Any]], phase: Phase,
                     message_part: str) -> None:
    d = decide(_tj(), _obs(jobs=jobs, pods=pods))
    assert d.status.phase == phase
    assert message_part in d.status.message
    assert d.create_attempt is None


def test_first_pass_creates_attempt_one_with_full_deadline() -> None:
    d = decide(_tj(stopping={"maxRuntimeSeconds": 600}), _obs())
    assert (d.create_attempt, d.deadline_seconds, d.status.phase) == (1, 600, Phase.PENDING)
    # The status waits for the pass the new Job's watch event brings.
    assert d.write_status is False


def test_job_seen_writes_pending_with_created_condition_from_the_job() -> None:
    job = _job()
    job["metadata"]["creationTimestamp"] = "2026-01-01T12:00:01Z"
    d = decide(_tj(), _obs(jobs=[job]))
    assert d.write_status and d.create_attempt is None
    assert (d.status.phase, d.status.attempts) == (Phase.PENDING, 1)
    created = next(c for c in d.status.conditions if c.type == "Created")
    assert (created.status, created.message, created.last_transition_time) == (
        "True", "attempt 1 created", "2026-01-01T12:00:01Z")
    # A retry's Job: same condition, new message, transition time kept.
    again = decide(_tj(status=d.status.model_dump(mode="json", by_alias=True, exclude_none=True)),
                   _obs(jobs=[_job(cond="Failed"), _job(attempt=2)]))
    created = next(c for c in again.status.conditions if c.type == "Created")
    assert (created.message, created.last_transition_time) == ("attempt 2 created", "2026-01-01T12:00:01Z")


def test_unknown_instance_type_is_terminal() -> None:
    d = decide(_tj(), Observed(now=NOW, instance_error="unknown instance type 'x' (known: a)"))
    assert d.status.phase == Phase.FAILED and d.create_attempt is None
    assert d.status.failure_reason == "unknown instance type 'x' (known: a)"
    assert d.events[0][0] == "Warning"


@pytest.mark.parametrize(("max_attempts", "create", "phase", "reason"), [
    (3, 2, Phase.PENDING, None),
    (1, None, Phase.FAILED, "CUDA OOM"),
])
def test_failure_retries_then_fails_with_the_failure_file(
    max_attempts: int, create: int | None, phase: Phase, reason: str | None,
) -> None:
    d = decide(_tj(retry={"maxAttempts": max_attempts}, stopping={"maxRuntimeSeconds": 100}),
               _obs(jobs=[_job(cond="Failed", reason="BackoffLimitExceeded")],
                    pods=[_pod(phase="Failed", trainer="terminated", exit_code=1, message="CUDA OOM\n")]))
    assert (d.create_attempt, d.status.phase, d.status.failure_reason) == (create, phase, reason)
    if create:
        assert d.deadline_seconds == 95 and d.status.attempts == 2  # 5 s used by attempt 1


def test_exit_code_without_failure_file() -> None:
    d = decide(_tj(), _obs(jobs=[_job(cond="Failed")],
                           pods=[_pod(phase="Failed", trainer="terminated", exit_code=137)]))
    assert d.status.failure_reason == "trainer exited with code 137 (Error) and wrote no failure file"


@pytest.mark.parametrize(("job", "suspend", "phase"), [
    (_job(active=2), "mn-a1", Phase.PENDING),          # pods still stopping
    (_job(suspend=True, active=0), None, Phase.STOPPED),
    (_job(cond="Failed"), None, Phase.STOPPED),
])
def test_stop_annotation(job: dict[str, Any], suspend: str | None, phase: Phase) -> None:
    d = decide(_tj({"trainforge.dev/stop": "true"}), _obs(jobs=[job]))
    assert (d.suspend_job, d.status.phase) == (suspend, phase)


def test_completed_records_metrics_artifacts_and_billable_seconds() -> None:
    art = ArtifactURIs.for_job("s3://out/", "default", "mn")
    d = decide(_tj(metrics=[{"name": "acc", "regex": "acc=(.*)"}]),
               _obs(jobs=[_job(cond="Complete")], final_metrics={"loss": 0.1, "acc": 0.9},
                    stored=frozenset({art.model, art.metrics}),
                    pods=[_held("mn-a1", T0, "2026-01-01T12:00:05Z", "Succeeded")] * 2))
    s = d.status
    assert s.final_metrics == {"loss": 0.1, "acc": 0.9}
    assert (s.artifacts.model, s.artifacts.output, s.artifacts.metrics) == (art.model, None, art.metrics)
    assert s.billable_seconds == 10  # 5 s x 2 hosts
    assert s.start_time == T0 and s.end_time is not None
    assert headline_metric(_tj(metrics=[{"name": "acc", "regex": "acc=(.*)"}]), s.final_metrics) == "acc=0.9"


def test_finished_status_is_kept() -> None:
    tj = _tj(status={"phase": "Completed", "message": "done"})
    d = decide(tj, _obs(jobs=[_job(cond="Failed")]))
    assert d.status.phase == Phase.COMPLETED and d.create_attempt is None and not d.events


def test_condition_keeps_last_transition_time_when_only_the_message_changes() -> None:
    first = set_condition([], "Scheduled", "False", "Unschedulable", "a", NOW)
    later = NOW + timedelta(minutes=1)
    same = set_condition(first, "Scheduled", "False", "Unschedulable", "b", later)
    flipped = set_condition(same, "Scheduled", "True", "Scheduled", "ok", later)
    assert same[0].last_transition_time == first[0].last_transition_time and same[0].message == "b"
    assert flipped[0].last_transition_time == "2026-01-01T12:01:10Z"
    assert isinstance(flipped[0], Condition)


def test_failed_job_never_reports_a_model_even_if_one_was_uploaded() -> None:
    art = ArtifactURIs.for_job("s3://out/", "default", "mn")
    d = decide(_tj(), _obs(jobs=[_job(cond="Failed")],
                           pods=[_pod(phase="Failed", trainer="terminated", exit_code=1)],
                           stored=frozenset({art.model, art.output, art.metrics})))
    s = d.status
    assert s.phase == Phase.FAILED
    assert (s.artifacts.model, s.artifacts.output, s.artifacts.metrics) == (None, None, art.metrics)


def _held(job: str, start: str | None, finished: str | None = None, phase: str = "Running") -> dict[str, Any]:
    """A pod of ``job`` the kubelet took at ``start`` (None: still waiting for a node)."""
    status: dict[str, Any] = {"phase": phase}
    if start:
        status["startTime"] = start
    if finished:
        status["containerStatuses"] = [{"name": "trainer", "state": {"terminated": {
            "exitCode": 1, "finishedAt": finished}}}]
    return {"metadata": {"name": f"{job}-0", "labels": {"job-name": job}}, "status": status}


def test_queued_job_has_not_started_nor_been_scheduled() -> None:
    waiting = _pod(scheduled=True, phase="Pending", trainer=None)
    waiting["spec"]["nodeName"] = None  # created; the scheduler has not looked at it yet
    d = decide(_tj(), _obs(jobs=[_job()], pods=[waiting]))
    assert d.status.phase == Phase.PENDING and d.status.start_time is None
    assert not any(c.type == "Scheduled" for c in d.status.conditions)


@pytest.mark.parametrize(("pods", "previous", "billable"), [
    ([_held("mn-a1", None, phase="Pending")], 0, 0),                      # queued: holds nothing
    ([_held("mn-a1", T0), _held("mn-a1", "2026-01-01T12:00:04Z")], 0, 16),  # 10 s + 6 s until now
    ([_held("mn-a1", T0, "2026-01-01T12:00:03Z", phase="Failed")], 0, 3),
    ([], 42, 42),                                                          # pods gone: never less
])
def test_billable_seconds_are_node_seconds_of_pods(pods: list[dict[str, Any]], previous: int,
                                                    billable: int) -> None:
    tj = _tj(status={"phase": "Training", "billableSeconds": previous}) if previous else _tj()
    d = decide(tj, _obs(jobs=[_job()], pods=pods))
    assert d.status.billable_seconds == billable


def test_billable_seconds_add_up_every_attempt() -> None:
    first = _job(cond="Failed")  # ended 12:00:05
    d = decide(_tj(retry={"maxAttempts": 3}),
               _obs(jobs=[first, _job(attempt=2)], pods=[_held("mn-a2", "2026-01-01T12:00:08Z")],
                    earlier_pods=[_held("mn-a1", T0)]))  # Running in the cache, but its Job ended
    assert d.status.billable_seconds == 5 + 2


@pytest.mark.parametrize(("old", "new", "skip"), [
    ({"phase": "Training", "billableSeconds": 100}, {"phase": "Training", "billableSeconds": 104}, True),
    ({"phase": "Training", "billableSeconds": 100}, {"phase": "Training", "billableSeconds": 108}, False),
    ({"phase": "Training", "billableSeconds": 100}, {"phase": "Uploading", "billableSeconds": 101}, False),
    ({"phase": "Training"}, {"phase": "Training", "message": "x"}, False),
])
def test_billing_clock_alone_is_written_about_once_per_interval(
        old: dict[str, Any], new: dict[str, Any], skip: bool) -> None:
    assert only_the_clock(old, new, tolerance=7.5) is skip


# -- preemption: an evicted or preempted attempt is resumed outside the retry budget --------
def _evicted(job: str = "mn-a1") -> dict[str, Any]:
    pod = _held(job, T0, "2026-01-01T12:00:04Z", phase="Failed")
    pod["status"]["conditions"] = [{"type": "DisruptionTarget", "status": "True",
                                    "reason": "EvictionByEvictionAPI", "message": "Eviction API: evicting"}]
    return pod


def _policy_failed(attempt: int = 1) -> dict[str, Any]:
    job = _job(attempt=attempt, cond="Failed", reason="PodFailurePolicy")
    job["status"]["conditions"][0]["message"] = (
        "Pod default/mn-a1-0-x has condition DisruptionTarget matching FailJob rule at index 0")
    return job


@pytest.mark.parametrize(("pods", "why"), [
    ([_evicted()], "EvictionByEvictionAPI: Eviction API: evicting"),  # the evicted pod, seen
    ([], "DisruptionTarget: Pod default/mn-a1-0-x has condition"),     # already deleted: the Job says it
])
def test_a_preempted_attempt_is_resumed_without_using_the_retry_budget(pods: list[dict[str, Any]],
                                                                        why: str) -> None:
    d = decide(_tj(retry={"maxAttempts": 1}, stopping={"maxRuntimeSeconds": 100}),
               _obs(jobs=[_policy_failed()], pods=pods))
    assert (d.create_attempt, d.deadline_seconds, d.status.phase) == (2, 95, Phase.PENDING)
    assert "attempt 1 was preempted" in d.status.message and d.status.failure_reason is None
    first, second = d.status.attempt_history
    assert (first.outcome, second.attempt, second.outcome) == ("Preempted", 2, "Active")
    assert first.reason is not None and first.reason.startswith(why)
    assert ("Warning", "Preempted") in [(kind, reason) for kind, reason, _ in d.events]


def test_failures_alone_count_against_max_attempts() -> None:
    history = [{"attempt": 1, "outcome": "Preempted", "reason": "r"}, {"attempt": 2}]
    failing = [_pod(phase="Failed", trainer="terminated", exit_code=1, message="CUDA OOM\n")]
    jobs = [_policy_failed(), _job(attempt=2, cond="Failed", reason="BackoffLimitExceeded")]
    for max_attempts, phase in ((1, Phase.FAILED), (2, Phase.PENDING)):
        d = decide(_tj(retry={"maxAttempts": max_attempts}, status={"phase": "Training", "attempts": 2,
                                                                   "attemptHistory": history}),
                   _obs(jobs=jobs, pods=failing))
        assert d.status.phase == phase
        assert [r.outcome for r in d.status.attempt_history][:2] == ["Preempted", "Failed"]


def test_preemptions_past_the_limit_fail_the_job() -> None:
    history = [{"attempt": 1, "outcome": "Preempted"}, {"attempt": 2}]
    d = decide(_tj(status={"phase": "Training", "attempts": 2, "attemptHistory": history}),
               _obs(jobs=[_policy_failed(), _policy_failed(attempt=2)]), max_preemptions=1)
    assert d.status.phase == Phase.FAILED and d.create_attempt is None
    assert d.status.failure_reason is not None and d.status.failure_reason.startswith("preempted 2 times")


def test_billing_of_a_preempted_attempt_whose_pod_is_gone() -> None:
    """Recorded while it ran (start, seconds so far); its Job's end closes it:
    12:00:00 -> 12:00:05. The next attempt's pod, waiting for a node, adds nothing."""
    one = _tj(instance={"type": "gpu-8x", "count": 1},
              status={"phase": "Training", "attempts": 1, "billableSeconds": 3,
                      "attemptHistory": [{"attempt": 1, "startTime": T0, "billableSeconds": 3}]})
    first = _policy_failed()
    first["spec"]["parallelism"] = 1
    d = decide(one, _obs(jobs=[first]))
    assert d.status.attempt_history[0].billable_seconds == 5 and d.status.billable_seconds == 5
    assert d.status.attempt_history[0].end_time == "2026-01-01T12:00:05Z"
    later = _tj(instance={"type": "gpu-8x", "count": 1}, status={
        "phase": "Pending", "attempts": 2, "billableSeconds": 5,
        "attemptHistory": [r.model_dump(by_alias=True) for r in d.status.attempt_history]})
    d = decide(later, _obs(jobs=[first, _job(attempt=2)], pods=[_held("mn-a2", None, phase="Pending")]))
    assert d.status.billable_seconds == 5 and d.status.phase == Phase.PENDING


def test_stopped_only_once_the_pods_are_over() -> None:
    uploading = _pod(trainer="terminated", exit_code=143)  # the sidecar still stages out
    stopping = _tj({"trainforge.dev/stop": "true"})
    d = decide(stopping, _obs(jobs=[_job(suspend=True, active=0)], pods=[uploading]))
    assert d.status.phase != Phase.STOPPED and d.status.message.startswith("stopping")
    d = decide(stopping, _obs(jobs=[_job(suspend=True, active=0)], pods=[_pod(phase="Failed", trainer="terminated")]))
    assert d.status.phase == Phase.STOPPED and d.status.attempt_history[0].outcome == "Stopped"


def test_the_running_attempts_seconds_are_clock_too() -> None:
    old = {"phase": "Training", "billableSeconds": 100, "attemptHistory": [{"attempt": 1, "billableSeconds": 100}]}
    ticked = {**old, "billableSeconds": 104, "attemptHistory": [{"attempt": 1, "billableSeconds": 104}]}
    ended = {**ticked, "attemptHistory": [{"attempt": 1, "billableSeconds": 104, "outcome": "Preempted"}]}
    assert only_the_clock(old, ticked, tolerance=7.5) and not only_the_clock(old, ended, tolerance=7.5)


def test_the_evicted_pods_own_reason_outlives_the_pod() -> None:
    seen = decide(_tj(), _obs(jobs=[_job()], pods=[_evicted()]))  # evicted, the Job not failed yet
    assert seen.status.attempt_history[0].reason == "EvictionByEvictionAPI: Eviction API: evicting"
    later = _tj(status=seen.status.model_dump(by_alias=True, exclude_none=True))
    d = decide(later, _obs(jobs=[_policy_failed()]))  # the pod is gone now
    assert d.status.attempt_history[0].reason == "EvictionByEvictionAPI: Eviction API: evicting"
    assert d.status.attempt_history[0].outcome == "Preempted" and d.create_attempt == 2
