"""The TuningJob reconciler's pure parts: the status after a pass, the trial
body, what a stop writes and how it is read back. No cluster."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from trainforge.spec import parse_tuning_job
from trainforge.spec.tuning import TrialCounts, TuningJobStatus
from trainforge.tuning import TrialRecord, TrialState
from trainforge.tuning.engine import Plan
from trainforge_controller.tuning import early_stops, stop_patch, trial_body, tuning_status

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
BEST = TrialRecord(3, "hpo-003", {"lr": "0.01"}, TrialState.COMPLETED, {1: 0.9}, 0.9)


def test_a_finished_verdict_waits_for_the_active_trials_then_ends() -> None:
    step = Plan(finished=("Completed", "all 4 trials finished"), counts=TrialCounts(completed=3, running=1), best=BEST)
    waiting = tuning_status(TuningJobStatus(), step, active=1, started=4, max_trials=4, now=NOW)
    assert waiting.status.phase == "Running" and waiting.status.end_time is None
    assert waiting.status.message == "ending (all 4 trials finished): waiting for 1 trials"
    done = tuning_status(waiting.status, step, active=0, started=4, max_trials=4, now=NOW)
    assert (done.status.phase, done.status.end_time) == ("Completed", "2026-01-01T00:00:00Z")
    assert done.status.best_trial is not None and done.status.best_trial.name == "hpo-003"
    assert {c.type: c.status for c in done.status.conditions} == {"Running": "False", "Completed": "True"}
    assert done.events == [("Normal", "Completed", "all 4 trials finished")]
    again = tuning_status(done.status, step, active=0, started=4, max_trials=4, now=NOW)
    assert again.events == []  # an event per transition, not per pass


def test_a_trial_is_owned_named_and_labelled_and_a_stop_says_why() -> None:
    tuning = parse_tuning_job({"metadata": {"name": "hpo", "namespace": "team-a", "labels": {"team": "a"}}, "spec": {
        "trainingJobTemplate": {"image": "img:1", "hyperparameters": {"epochs": "3"},
                                "metrics": [{"name": "acc", "regex": "acc=([0-9.]+)"}]},
        "objective": {"metric": "acc"}, "parameters": [{"name": "lr", "type": "Continuous", "min": 0.1, "max": 1}]}})
    body = trial_body(tuning, "uid-1", 7, {"lr": "0.5"})
    assert body["metadata"]["name"] == "hpo-007" and body["kind"] == "TrainingJob"
    assert body["metadata"]["labels"] == {"team": "a", "trainforge.dev/tuning-job": "hpo", "trainforge.dev/trial": "7"}
    assert body["metadata"]["ownerReferences"] == [{"apiVersion": "trainforge.dev/v1alpha1", "kind": "TuningJob",
                                                    "name": "hpo", "uid": "uid-1", "controller": True}]
    assert body["spec"]["hyperparameters"] == {"epochs": "3", "lr": "0.5"} and "status" not in body
    early = {"metadata": stop_patch("early stopping (median rule): worse", early=True)["metadata"]}
    ended = {"metadata": stop_patch("tuning job ended: stopped on request", early=False)["metadata"]}
    assert early_stops({1: early, 2: ended, 3: {"metadata": {}}}) == {1: "early stopping (median rule): worse"}
    assert ended["metadata"]["annotations"]["trainforge.dev/stop"] == "true"


def test_a_trial_releases_its_hosts_when_every_pod_of_its_latest_attempt_succeeded() -> None:
    from trainforge_controller.tuning import hosts_released

    def job(attempt: int, failed: bool = False) -> dict:
        conditions = [{"type": "Failed", "status": "True"}] if failed else []
        return {"metadata": {"name": f"t-a{attempt}", "labels": {"trainforge.dev/attempt": str(attempt)}},
                "status": {"conditions": conditions}}

    def pods(*phases: str) -> dict:
        return {f"t-a{a}": [{"status": {"phase": p}} for p in phases] for a in (1, 2)}

    by = lambda table: (lambda name: table.get(name, []))
    assert not hosts_released([], by({}), 1), "no attempt yet"
    assert hosts_released([job(1)], by(pods("Succeeded")), 1)
    assert not hosts_released([job(1)], by(pods("Running")), 1)
    assert not hosts_released([job(1)], by(pods("Succeeded", "Running")), 2), "one host still trains"
    assert hosts_released([job(1)], by(pods("Succeeded", "Succeeded")), 2)
    assert not hosts_released([job(1, failed=True)], by(pods("Succeeded")), 1), "a retry needs the hosts again"
    assert hosts_released([job(1, failed=True), job(2)], by({"t-a2": [{"status": {"phase": "Succeeded"}}]}), 1)


def test_the_controller_words_invalid_specs_with_the_sdks_field_paths() -> None:
    """Both reconcilers: ``spec.inputs[0].uri``, ``spec.parameters[0]`` (never
    ``spec.parameters.0``), cross-field tuning rules with their own paths."""
    import pytest
    from pydantic import ValidationError
    from trainforge.spec import TrainingJob
    from trainforge.spec.tuning import TuningJob
    from trainforge_controller.reconciler import invalid_spec

    from tests.unit.test_tuning_spec import doc

    with pytest.raises(ValidationError) as bad_job:
        TrainingJob.model_validate({"metadata": {"name": "j"}, "spec": {
            "image": "registry.example.com/x:1", "instance": {"type": "cpu"},
            "inputs": [{"channel": "train", "uri": "ftp://nope"}]}})
    assert invalid_spec(bad_job.value).startswith("invalid spec: spec.inputs[0].uri: ")
    with pytest.raises(ValidationError) as bad_range:
        TuningJob.model_validate(doc(parameters=[{"name": "lr", "type": "Continuous", "min": 1, "max": 0.5}]))
    assert invalid_spec(bad_range.value) == "invalid spec: spec.parameters[0]: min (1) must be less than max (0.5)"
    with pytest.raises(ValidationError) as no_metric:
        TuningJob.model_validate(doc(objective={"metric": "nope", "type": "Maximize"}))
    assert invalid_spec(no_metric.value).startswith("invalid spec: spec.objective.metric: 'nope' is not a metric")


def test_free_numbers_fill_the_holes_first() -> None:
    from trainforge_controller.tuning import free_numbers

    assert free_numbers(set(), 3) == [0, 1, 2]
    assert free_numbers({0, 1, 3, 5}, 4) == [2, 4, 6, 7]
    assert free_numbers({0, 1, 3}, 1) == [2]
    assert free_numbers({0, 1}, 0) == []


class FlakyApiserver:
    """The wire of a TuningJob pass: creates answered after a pause (so
    overlapping creates show), the one for ``fail`` refused once with a 500
    (a retryable error: an etcd timeout, a webhook down)."""

    def __init__(self, fail: str) -> None:
        import threading

        self.fail, self.lock = fail, threading.Lock()
        self.created: list[str] = []
        self.status_writes: list[dict] = []
        self.cache: Any = None
        self.in_flight = self.most_in_flight = 0

    def create(self, path: str, body: dict) -> dict:
        import time

        from kubernetes import client

        name = body["metadata"]["name"]
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            time.sleep(0.05)
            with self.lock:
                if name == self.fail:
                    self.fail = ""
                    raise client.ApiException(status=500, reason="etcdserver: request timed out")
                if name in self.created:
                    raise client.ApiException(status=409, reason="AlreadyExists")
                self.created.append(name)
            return {**body, "metadata": {**body["metadata"], "uid": f"uid-{name}", "namespace": "team-a",
                                         "resourceVersion": str(len(self.created))}}
        finally:
            with self.lock:
                self.in_flight -= 1

    def merge_patch(self, path: str, body: dict) -> dict:
        self.status_writes.append(body)
        raw = self.cache.tuning_jobs.get("team-a", "hpo")
        status = {k: v for k, v in body["status"].items() if v is not None}
        return {**raw, "status": status, "metadata": {**raw["metadata"], "resourceVersion": str(len(self.status_writes) + 1)}}


def test_a_pass_creates_its_trials_in_parallel_and_a_failed_create_is_retried_under_its_number() -> None:
    import time

    import pytest
    from kubernetes import client
    from trainforge_controller.cache import Cache
    from trainforge_controller.errors import RetryableError
    from trainforge_controller.settings import ControllerSettings
    from trainforge_controller.tuning import CREATE_PARALLELISM, TuningReconciler

    cache = Cache()
    cache.tuning_jobs.upsert({
        "apiVersion": "trainforge.dev/v1alpha1", "kind": "TuningJob",
        "metadata": {"name": "hpo", "namespace": "team-a", "uid": "uid-hpo", "resourceVersion": "1", "generation": 1},
        "spec": {"trainingJobTemplate": {"image": "img:1", "metrics": [{"name": "acc", "regex": "acc=([0-9.]+)"}]},
                 "objective": {"metric": "acc"}, "strategy": {"type": "Random", "seed": 1},
                 "parameters": [{"name": "lr", "type": "Continuous", "min": 0.1, "max": 1}],
                 "limits": {"maxTrials": 20, "maxParallelTrials": 12}}})
    apiserver = FlakyApiserver(fail="hpo-003")
    reconciler = TuningReconciler(client.ApiClient(), ControllerSettings(), cache, None, lambda *a: None)  # type: ignore[arg-type]
    reconciler.wire = apiserver  # type: ignore[assignment]
    apiserver.cache = cache

    with pytest.raises(RetryableError, match="500"):
        reconciler.reconcile("team-a", "hpo")
    first = [f"hpo-{n:03d}" for n in range(12) if n != 3]
    assert sorted(apiserver.created) == first  # all but the failed one, none twice
    assert 1 < apiserver.most_in_flight <= CREATE_PARALLELISM
    assert {o["metadata"]["name"] for o in cache.training_jobs.by_label("team-a", "hpo")} == set(first)

    result = reconciler.reconcile("team-a", "hpo")  # the retry: exactly the hole, within maxParallelTrials
    assert result.created == ("hpo-003",)
    assert sorted(apiserver.created) == [f"hpo-{n:03d}" for n in range(12)]
    assert reconciler.reconcile("team-a", "hpo").created == ()  # 12 running: no room
    assert len(apiserver.status_writes) == 1

    # A trial starts training: only the counts change, so the write waits
    # (settings.tuning_status_seconds after the last) and a requeue brings it.
    trial = cache.training_jobs.get("team-a", "hpo-005")
    cache.training_jobs.upsert({**trial, "status": {"phase": "Training"},
                                "metadata": {**trial["metadata"], "resourceVersion": "100"}})
    held = reconciler.reconcile("team-a", "hpo")
    assert len(apiserver.status_writes) == 1
    assert held.requeue_after is not None and 0 < held.requeue_after <= ControllerSettings().tuning_status_seconds
    time.sleep(held.requeue_after)
    reconciler.reconcile("team-a", "hpo")
    assert [w["status"]["trials"].get("running", 0) for w in apiserver.status_writes] == [0, 1]


def test_local_and_cluster_jobs_speak_one_condition_dialect() -> None:
    """The types a local job records are the cluster's (trainforge.conditions)."""
    from trainforge.conditions import (
        TRAINING_CONDITIONS, TUNING_CONDITIONS, enter_phase, started_locally, tuning_phase,
    )

    local = enter_phase(started_locally([], NOW), "Completed", "training finished", NOW)
    assert [(c.type, c.status) for c in local] == [("Created", "True"), ("Scheduled", "True"), ("Completed", "True")]
    assert {c.type for c in local} <= set(TRAINING_CONDITIONS)
    running = tuning_phase([], "Running", "1 of 4 trials started", NOW)
    ended = tuning_phase(running, "Stopped", "stopped on request", NOW)
    assert [(c.type, c.status, c.reason) for c in ended] == [("Running", "False", "Stopped"),
                                                             ("Stopped", "True", "Stopped")]
    assert {c.type for c in ended} <= set(TUNING_CONDITIONS)


def test_a_status_write_of_counts_only_waits_but_a_new_phase_or_condition_does_not() -> None:
    from trainforge_controller.tuning import same_state

    running = {"phase": "Running", "message": "3 of 9 trials started, 3 active", "startTime": "t0",
               "trials": {"running": 3}, "conditions": [{"type": "Running", "status": "True", "reason": "TrialsActive",
                                                         "message": "3 of 9", "lastTransitionTime": "t0"}]}
    more = {**running, "message": "4 of 9 trials started, 4 active", "trials": {"running": 4, "completed": 1},
            "bestTrial": {"name": "hpo-000"},
            "conditions": [{**running["conditions"][0], "message": "4 of 9"}]}
    assert same_state(running, more)
    ended = {**more, "phase": "Completed"}
    assert not same_state(running, ended)
    assert not same_state({}, running)  # the first write (startTime, the Running condition)
    flipped = {**more, "conditions": [{**more["conditions"][0], "status": "False"}]}
    assert not same_state(running, flipped)
