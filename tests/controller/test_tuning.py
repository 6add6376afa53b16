"""The TuningJob reconciler against the real control plane, kwok GPU nodes and
MinIO. Trials are TrainingJobs the controller creates; kwok runs their pods
(they Succeed at once) and what the stager would have uploaded (each trial's
metrics) the test writes into MinIO itself, before the trial ends."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.controller.test_reconcile import GPU_16X, Harness, harness  # noqa: F401 - the fixture
from tests.infra.waiting import wait_until
from trainforge.names import GROUP, TRAINING_PLURAL, TUNING_JOB_LABEL, TUNING_PLURAL, VERSION

METRIC = "val:acc"


def template(h: Harness, **extra: Any) -> dict[str, Any]:
    return {"image": "registry.example.com/mnist:1.2", "instance": {"type": "gpu-1x"},
            "hyperparameters": {"epochs": "3"}, "output": {"uri": h.bucket.uri("models/")},
            "metrics": [{"name": METRIC, "regex": "val_acc=([0-9.]+)"}], **extra}


def submit_tuning(h: Harness, name: str, template_spec: dict[str, Any], **spec: Any) -> None:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TuningJob", "metadata": {"name": name},
            "spec": {"trainingJobTemplate": template_spec, "objective": {"metric": METRIC, "type": "Maximize"},
                     "parameters": [{"name": "lr", "type": "Continuous", "min": 0.001, "max": 0.1, "scale": "Log"}],
                     "strategy": {"type": "Random", "seed": 7}, **spec}}
    h.custom.create_namespaced_custom_object(GROUP, VERSION, h.ns, TUNING_PLURAL, body)


def tuning(h: Harness, name: str) -> dict[str, Any]:
    return h.custom.get_namespaced_custom_object(GROUP, VERSION, h.ns, TUNING_PLURAL, name)


def trials(h: Harness, name: str) -> dict[str, dict[str, Any]]:
    items = h.custom.list_namespaced_custom_object(GROUP, VERSION, h.ns, TRAINING_PLURAL,
                                                   label_selector=f"{TUNING_JOB_LABEL}={name}")["items"]
    return {i["metadata"]["name"]: i for i in items}


def phase_of(obj: dict[str, Any]) -> str | None:
    return (obj.get("status") or {}).get("phase")


def put_metrics(h: Harness, trial: str, values: list[float]) -> None:
    h.put(h.bucket.uri(f"models/{h.ns}/{trial}/metrics/metrics.jsonl"), b"".join(
        json.dumps({"name": METRIC, "value": v, "step": s + 1, "timestamp": 1.7e9 + s}).encode() + b"\n"
        for s, v in enumerate(values)))


def resume(h: Harness, trial: str) -> None:
    """What Kueue does on admission: the trial's Job runs (kwok makes it succeed)."""
    wait_until(lambda: h.jobs(trial) == [f"{trial}-a1"], timeout=30, what=f"the Job of {trial}")
    h.batch.patch_namespaced_job(f"{trial}-a1", h.ns, {"spec": {"suspend": False}})


def wait_tuning(h: Harness, name: str, phase: str, timeout: float = 45) -> dict[str, Any]:
    wait_until(lambda: phase_of(tuning(h, name)) == phase, timeout=timeout,
               what=f"tuning job {name} {phase} (now {tuning(h, name).get('status')})", watch=h.kube.processes)
    return tuning(h, name)


def test_trials_run_with_bounded_parallelism_and_the_best_is_found(harness: Harness) -> None:  # noqa: F811
    """Suspended trials (as under Kueue) hold their slots: never more than
    maxParallelTrials exist unfinished; each one that ends makes room for the next."""
    h = harness
    objectives = {"tune-000": 0.71, "tune-001": 0.93, "tune-002": 0.85, "tune-003": 0.64}
    for trial, value in objectives.items():
        put_metrics(h, trial, [value - 0.2, value])
    submit_tuning(h, "tune", template(h, suspend=True), limits={"maxTrials": 4, "maxParallelTrials": 2})
    wait_until(lambda: sorted(trials(h, "tune")) == ["tune-000", "tune-001"], timeout=30, what="two trials")
    wait_until(lambda: all(phase_of(t) == "Queued" for t in trials(h, "tune").values()), timeout=30,
               what="both trials queued")
    # counts alone are written at most once a second (settings.tuning_status_seconds)
    wait_until(lambda: tuning(h, "tune")["status"]["trials"]["pending"] == 2, timeout=10, what="the counts")
    status = tuning(h, "tune")["status"]
    assert status["phase"] == "Running" and status["trials"]["pending"] == 2
    trial = trials(h, "tune")["tune-000"]
    owner = trial["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("TuningJob", "tune", tuning(h, "tune")["metadata"]["uid"])
    assert trial["metadata"]["labels"]["trainforge.dev/trial"] == "0"
    assert 0.001 <= float(trial["spec"]["hyperparameters"]["lr"]) <= 0.1
    assert trial["spec"]["hyperparameters"]["epochs"] == "3"  # the template's static ones stay

    resume(h, "tune-000")  # one ends: exactly one more starts
    wait_until(lambda: sorted(trials(h, "tune")) == ["tune-000", "tune-001", "tune-002"], timeout=30,
               what="trial 2 after trial 0 ended")
    # Its pod Succeeded made the room; the trial's own status follows.
    wait_until(lambda: phase_of(trials(h, "tune")["tune-000"]) == "Completed", timeout=30, what="trial 0 Completed")
    assert sorted(trials(h, "tune")) == ["tune-000", "tune-001", "tune-002"]
    for name in ("tune-001", "tune-002"):
        resume(h, name)
    wait_until(lambda: "tune-003" in trials(h, "tune"), timeout=30, what="trial 3")
    resume(h, "tune-003")
    status = wait_tuning(h, "tune", "Completed")["status"]
    assert status["trials"] == {"pending": 0, "running": 0, "completed": 4, "failed": 0, "stopped": 0}
    assert status["bestTrial"]["name"] == "tune-001" and status["bestTrial"]["objective"] == 0.93
    assert status["message"] == "all 4 trials finished"
    assert len(trials(h, "tune")) == 4
    printed = h.kube.kubectl("get", "tuningjobs", "-n", h.ns).stdout
    assert printed.split("\n")[0].split() == ["NAME", "PHASE", "DONE", "RUNNING", "FAILED", "BEST", "AGE"]
    assert printed.split("\n")[1].split()[:6] == ["tune", "Completed", "4", "0", "0", "0.93"]


def test_controller_killed_mid_tuning_loses_and_duplicates_nothing(harness: Harness) -> None:  # noqa: F811
    """Trials waiting for GPUs (16 GPUs, nodes of 8) hold their slots; killed
    and restarted -- twice over, two controllers at once -- the controller
    rebuilds the search from the trials and creates no trial twice."""
    h = harness
    h.catalog(GPU_16X)
    submit_tuning(h, "gpus", template(h, instance={"type": "gpu-16x"}),
                  limits={"maxTrials": 5, "maxParallelTrials": 3})
    wait_until(lambda: len(trials(h, "gpus")) == 3 and all(phase_of(t) == "Queued" for t in trials(h, "gpus").values()),
               timeout=30, what="three trials queued for GPUs")
    queued = trials(h, "gpus")["gpus-000"]
    assert "Insufficient nvidia.com/gpu" in queued["status"]["message"]
    before = {name: t["spec"]["hyperparameters"] for name, t in trials(h, "gpus").items()}
    h.stop()
    h.start()
    h.start()
    # A trial stopped by hand ends; the restarted controllers start the next, once.
    h.custom.patch_namespaced_custom_object(GROUP, VERSION, h.ns, TRAINING_PLURAL, "gpus-001", {
        "metadata": {"annotations": {"trainforge.dev/stop": "true"}}})
    wait_until(lambda: "gpus-003" in trials(h, "gpus"), timeout=30, what="trial 3 after trial 1 was stopped")
    wait_until(lambda: tuning(h, "gpus")["status"]["trials"]["stopped"] == 1, timeout=15, what="stopped=1")
    now = trials(h, "gpus")
    assert sorted(now) == ["gpus-000", "gpus-001", "gpus-002", "gpus-003"]
    assert {name: now[name]["spec"]["hyperparameters"] for name in before} == before
    # Counts-only status writes are held up to TRAINFORGE_TUNING_STATUS_SECONDS:
    # stopped=1 may land a second before trial 3 is counted.
    expected = {"pending": 3, "running": 0, "completed": 0, "failed": 0, "stopped": 1}
    wait_until(lambda: tuning(h, "gpus")["status"]["trials"] == expected, timeout=15,
               what=f"the counts {expected}")

    # Stopping the tuning job stops its trials, each saying why.
    h.custom.patch_namespaced_custom_object(GROUP, VERSION, h.ns, TUNING_PLURAL, "gpus", {
        "metadata": {"annotations": {"trainforge.dev/stop": "true"}}})
    status = wait_tuning(h, "gpus", "Stopped")["status"]
    assert status["trials"]["stopped"] == 4 and status["endTime"]
    stopped = trials(h, "gpus")["gpus-000"]
    assert stopped["metadata"]["annotations"]["trainforge.dev/stop-reason"] == "tuning job ended: stopped on request"
    assert stopped["status"]["failureReason"] == "stopped on request: tuning job ended: stopped on request"
    assert sorted(trials(h, "gpus")) == ["gpus-000", "gpus-001", "gpus-002", "gpus-003"]


def test_invalid_tuning_jobs_are_refused_by_the_apiserver_or_fail_with_a_field_path(
        harness: Harness) -> None:  # noqa: F811
    h = harness
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TuningJob", "metadata": {"name": "bad"},
            "spec": {"trainingJobTemplate": template(h), "objective": {"metric": METRIC},
                     "parameters": [{"name": "lr", "type": "Continuous", "min": 0.1, "max": 1}],
                     "strategy": {"type": "Genetic"}}}
    result = h.kube.kubectl("apply", "-n", h.ns, "-f", "-", input=json.dumps(body), check=False)
    assert result.returncode != 0
    assert 'spec.strategy.type: Unsupported value: "Genetic"' in result.stderr, result.stderr
    body["spec"]["strategy"] = {"type": "Random"}
    body["spec"]["parameters"] = []
    result = h.kube.kubectl("apply", "-n", h.ns, "-f", "-", input=json.dumps(body), check=False)
    assert result.returncode != 0 and "spec.parameters" in result.stderr, result.stderr

    # A rule between fields the schema cannot state: the objective is no metric of the template.
    submit_tuning(h, "nometric", {**template(h), "metrics": [{"name": "loss", "regex": "loss=([0-9.]+)"}]})
    status = wait_tuning(h, "nometric", "Failed")["status"]
    assert status["failureReason"].startswith("invalid spec: spec.objective.metric: 'val:acc' is not a metric"), status
    assert next(c for c in status["conditions"] if c["type"] == "Failed")["reason"] == "InvalidSpec"
    assert trials(h, "nometric") == {}


def test_cli_and_sdk_tuning_on_the_cluster(harness: Harness, tmp_path: Path,  # noqa: F811
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """``trainforge tune SPEC --backend kubernetes --wait`` (the current
    kubeconfig's namespace), then the handle and TuningJobAnalytics with the
    kubernetes backend: the custom resource in, the trial table out (children +
    object store)."""
    from click.testing import CliRunner

    from trainforge.backends.kubernetes_tuning import KubernetesTuning
    from trainforge.cli import main
    from trainforge.errors import JobNotFound
    from trainforge.tuning_client import TuningJobAnalytics, get_tuning_job

    h = harness
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(Path(h.kube.kubeconfig).read_text())
    h.kube.kubectl("config", "set-context", "--current", f"--namespace={h.ns}", f"--kubeconfig={kubeconfig}")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("TRAINFORGE_K8S_OUTPUT", h.bucket.uri("models/"))
    monkeypatch.setenv("TRAINFORGE_HOME", str(tmp_path / "home"))
    for key, value in h.bucket.env().items():
        monkeypatch.setenv(key, value)
    put_metrics(h, "sdk-grid-000", [0.5, 0.8])
    put_metrics(h, "sdk-grid-001", [0.6, 0.9])
    document = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TuningJob", "metadata": {"name": "sdk-grid"}, "spec": {
        "trainingJobTemplate": template(h), "objective": {"metric": METRIC},
        "parameters": [{"name": "lr", "type": "Categorical", "values": ["0.01", "0.1"]}],
        "strategy": {"type": "Grid"}, "limits": {"maxTrials": 10, "maxParallelTrials": 2}}}
    spec = tmp_path / "tuning.json"
    spec.write_text(json.dumps(document))
    result = CliRunner().invoke(main, ["tune", str(spec), "--backend", "kubernetes", "--wait", "--timeout", "60",
                                       "-o", "json"])
    assert result.exit_code == 0, result.output
    final = json.loads(result.stdout)
    assert final["status"]["phase"] == "Completed" and final["status"]["trials"]["completed"] == 2
    listed = CliRunner().invoke(main, ["tuning", "list", "--backend", "kubernetes", "-o", "json"])
    assert listed.exit_code == 0 and "sdk-grid" in listed.stdout, listed.output

    backend = KubernetesTuning(h.store_settings, namespace=h.ns, kubeconfig=str(h.kube.kubeconfig),
                               output=h.bucket.uri("models/"))
    handle = get_tuning_job("sdk-grid", backend="kubernetes")
    assert [job.name for job in handle.trials()] == ["sdk-grid-000", "sdk-grid-001"]
    best = handle.best_trial()
    assert best is not None and best.name == "sdk-grid-001"
    frame = TuningJobAnalytics("sdk-grid", backend=backend).dataframe()
    assert sorted(frame["lr"]) == ["0.01", "0.1"]
    assert sorted(frame["FinalObjectiveValue"]) == [0.8, 0.9]
    assert set(frame["TrainingJobStatus"]) == {"Completed"}
    assert [t.name for t in backend.list()] == ["sdk-grid"]
    assert [r.final_objective for r in backend.records("sdk-grid")] == [0.8, 0.9]
    with pytest.raises(JobNotFound, match="sdk-grid-x"):
        backend.get("sdk-grid-x")
