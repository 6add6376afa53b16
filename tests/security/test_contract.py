"""Issue 9, point 6: the training contract cannot be overridden by accident, and
what the submitter holds stays with the submitter.

- spec.env may not set contract, rendezvous or loader variables; hyperparameter
  (and channel) names may not collide on one SM_* variable; env names are names.
- a process-backend trainer does not inherit the submitter's cloud credentials
  unless the backend option ``pass_env`` names them.
- credentials in an endpoint URL never reach an error message, status.json or a log.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
import trainforge
from trainforge.backends.local.backend import LocalBackend
from trainforge.backends.local.launchers import trainer_environ
from trainforge.config import S3Settings, Settings
from trainforge.contract import RESERVED_ENV_NAMES, reserved_env
from trainforge.errors import SpecError, StorageError
from trainforge.spec import Phase
from trainforge.spec.loading import parse_job
from trainforge.storage import open_store
from trainforge.uris import parse_uri, redact_userinfo

from tests.controller.conftest import trainforge_crd  # noqa: F401 - fixtures of the controller tests
from tests.controller.test_reconcile import harness  # noqa: F401

SECRET = "hunter2-do-not-print"


def _issues(spec: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as info:
        parse_job({"metadata": {"name": "j"}, "spec": {"image": "img", **spec}})
    return [(issue.path, issue.message) for issue in info.value.issues]


# --- spec validation ---------------------------------------------------------------

@pytest.mark.parametrize(("spec", "path", "words"), [
    ({"env": {"SM_MODEL_DIR": "/tmp/elsewhere"}}, "spec.env.SM_MODEL_DIR (key)", ["'SM_MODEL_DIR'", "reserved"]),
    ({"env": {"SM_HP_LR": "9"}}, "spec.env.SM_HP_LR (key)", ["reserved"]),
    ({"env": {"SM_ANYTHING_NEW": "x"}}, "spec.env.SM_ANYTHING_NEW (key)", ["reserved"]),
    ({"env": {"TRAINFORGE_METRICS_FILE": "/dev/null"}}, "spec.env.TRAINFORGE_METRICS_FILE (key)", ["reserved"]),
    ({"env": {"TRAINING_JOB_NAME": "other"}}, "spec.env.TRAINING_JOB_NAME (key)", ["reserved"]),
    ({"env": {"MASTER_ADDR": "evil.example.com"}}, "spec.env.MASTER_ADDR (key)", ["reserved"]),
    ({"env": {"NODE_RANK": "0"}}, "spec.env.NODE_RANK (key)", ["reserved"]),
    ({"env": {"WORLD_SIZE": "1"}}, "spec.env.WORLD_SIZE (key)", ["reserved"]),
    ({"env": {"PYTHONPATH": "/tmp/hijack"}}, "spec.env.PYTHONPATH (key)", ["reserved"]),
    ({"env": {"PYTHONSTARTUP": "/tmp/x.py"}}, "spec.env.PYTHONSTARTUP (key)", ["reserved"]),
    ({"env": {"LD_PRELOAD": "/tmp/evil.so"}}, "spec.env.LD_PRELOAD (key)", ["reserved"]),
    ({"env": {"LD_LIBRARY_PATH": "/tmp"}}, "spec.env.LD_LIBRARY_PATH (key)", ["reserved"]),
    ({"env": {"BAD-NAME": "x"}}, "spec.env.BAD-NAME (key)", ["environment variable name"]),
    ({"env": {"A=B": "x"}}, "spec.env.A=B (key)", ["environment variable name"]),
    ({"env": {"9LIVES": "x"}}, "spec.env.9LIVES (key)", ["environment variable name"]),
    ({"hyperparameters": {"lr-rate": 1, "lr_rate": 2}}, "spec.hyperparameters",
     ["'lr-rate'", "'lr_rate'", "SM_HP_LR_RATE"]),
    ({"hyperparameters": {"batch.size": 1, "BATCH_SIZE": 2}}, "spec.hyperparameters",
     ["'BATCH_SIZE'", "'batch.size'", "SM_HP_BATCH_SIZE"]),
    ({"inputs": [{"channel": "train-a", "uri": "s3://data/a/"}, {"channel": "TRAIN_A", "uri": "s3://data/b/"}]},
     "spec.inputs", ["'TRAIN_A'", "'train-a'", "SM_CHANNEL_TRAIN_A"]),
])
def test_spec_cannot_override_the_contract(spec: dict[str, Any], path: str, words: list[str]) -> None:
    ((got_path, message),) = _issues(spec)
    assert got_path == path
    for word in words:
        assert word in message, message


def test_every_reserved_key_is_reported_at_once() -> None:
    issues = _issues({"env": {"SM_MODEL_DIR": "a", "LD_PRELOAD": "b", "LOG_LEVEL": "debug"}})
    assert sorted(path for path, _ in issues) == ["spec.env.LD_PRELOAD (key)", "spec.env.SM_MODEL_DIR (key)"]


@pytest.mark.parametrize("name", ["LOG_LEVEL", "OMP_NUM_THREADS", "CUDA_LAUNCH_BLOCKING", "sm_model_dir",
                                  "NCCL_DEBUG", "HF_HOME", "MY_SM_VAR"])
def test_ordinary_env_and_distinct_hyperparameters_pass(name: str) -> None:
    job = parse_job({"metadata": {"name": "j"}, "spec": {
        "image": "img", "env": {name: "1"}, "hyperparameters": {"lr": 1, "lr-decay": 2, "lr.warmup": 3}}})
    assert job.spec.env == {name: "1"} and not reserved_env(name)


def test_every_variable_the_contract_sets_is_reserved() -> None:
    from trainforge.contract import HostInfo, Layout, contract_env
    from trainforge.instances import lookup

    job = parse_job({"metadata": {"name": "j"}, "spec": {"image": "i", "hyperparameters": {"lr": 1},
                                                         "inputs": [{"channel": "train", "uri": "s3://data/t/"}]}})
    env = contract_env(job_name="j", layout=Layout(), hyperparameters=job.spec.hyperparameters,
                       inputs=job.spec.inputs, host=HostInfo("algo-1", ("algo-1", "algo-2")),
                       instance=lookup("local"))
    assert [k for k in env if not reserved_env(k)] == []
    assert {"PYTHONPATH", "PYTHONHOME", "LD_PRELOAD"} <= RESERVED_ENV_NAMES


# --- the process trainer's environment ---------------------------------------------

def env_printing_trainer(folder: Path) -> Path:
    (folder / "trainer").mkdir(parents=True)
    (folder / "trainer" / "start.py").write_text(textwrap.dedent("""\
        import json, os
        print("ENV " + json.dumps(dict(os.environ), sort_keys=True), flush=True)
    """))
    return folder


def trainer_env_from_log(job: trainforge.Job) -> dict[str, str]:
    line = next(line for line in job.logs() if line.startswith("ENV "))
    return json.loads(line[len("ENV "):])


SUBMITTER_SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIASUBMITTER", "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_SESSION_TOKEN": SECRET,
    "AWS_PROFILE": "prod", "MINIO_ROOT_PASSWORD": SECRET, "GOOGLE_APPLICATION_CREDENTIALS": "/k.json",
    "AZURE_CLIENT_SECRET": SECRET, "KUBECONFIG": "/home/me/.kube/prod", "DOCKER_AUTH_CONFIG": SECRET,
    "TRAINFORGE_S3_SECRET": SECRET, "HF_TOKEN": SECRET, "GITHUB_TOKEN": SECRET,
    "WANDB_API_KEY": SECRET, "SSH_AUTH_SOCK": "/tmp/agent.sock", "DB_PASSWORD": SECRET,
}


def test_process_trainer_does_not_inherit_the_submitters_credentials(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in {**SUBMITTER_SECRETS, "OMP_NUM_THREADS": "3"}.items():
        monkeypatch.setenv(key, value)
    job = trainforge.submit_job(str(env_printing_trainer(tmp_path / "src")), backend=LocalBackend("process"))
    assert job.wait(timeout=60).phase == Phase.COMPLETED
    env = trainer_env_from_log(job)
    assert sorted(k for k in SUBMITTER_SECRETS if k in env) == []
    assert SECRET not in json.dumps(env)
    assert env["OMP_NUM_THREADS"] == "3" and env["PATH"]  # the rest of the environment is kept
    assert env["SM_MODEL_DIR"] and env["TRAINFORGE_JOB_NAME"] == job.name  # the contract is there


def test_pass_env_hands_on_exactly_what_it_names(home: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in SUBMITTER_SECRETS.items():
        monkeypatch.setenv(key, value)
    backend = LocalBackend("process", pass_env="AWS_PROFILE, WANDB_API_KEY")
    job = trainforge.submit_job(str(env_printing_trainer(tmp_path / "src")), backend=backend)
    assert job.wait(timeout=60).phase == Phase.COMPLETED
    env = trainer_env_from_log(job)
    assert sorted(k for k in SUBMITTER_SECRETS if k in env) == ["AWS_PROFILE", "WANDB_API_KEY"]


def test_trainer_environ_table() -> None:
    environ = {**SUBMITTER_SECRETS, "PATH": "/bin", "LANG": "C.UTF-8", "CUDA_VISIBLE_DEVICES": "0",
               "TRAINFORGE_HOME": "/h", "KUBERNETES_SERVICE_HOST": "10.0.0.1"}
    assert trainer_environ(environ) == {"PATH": "/bin", "LANG": "C.UTF-8", "CUDA_VISIBLE_DEVICES": "0"}
    assert trainer_environ(environ, frozenset({"HF_TOKEN"}))["HF_TOKEN"] == SECRET


# --- credentials in endpoint URLs ---------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("http://user:secret@minio:9000", "http://***@minio:9000"),
    ("cannot reach http://ak:s3cr%40t@10.0.0.1:9000/bucket/key now", "cannot reach http://***@10.0.0.1:9000/bucket/key now"),
    ("'https://a:b@c@host/x'", "'https://***@host/x'"),  # an unescaped "@" in the password
    ("s3://bucket/key@v2 and mail me@example.com", "s3://bucket/key@v2 and mail me@example.com"),
    ("http://host:9000/path?x=a@b", "http://host:9000/path?x=a@b"),
    ("two: http://a:1@h1/ http://b:2@h2/", "two: http://***@h1/ http://***@h2/"),
    ("no url here", "no url here"),
])
def test_redact_userinfo(text: str, expected: str) -> None:
    assert redact_userinfo(text) == expected


def test_storage_errors_never_show_endpoint_credentials(tmp_path: Path) -> None:
    # A real botocore client against a closed port: its own message repeats the endpoint URL.
    settings = Settings(home=tmp_path, s3=S3Settings(
        endpoint_url=f"http://trainforge:{SECRET}@127.0.0.1:1", access_key_id="a", secret_access_key="b"))
    store = open_store("s3://bucket/x", settings)
    assert SECRET not in repr(store)
    with pytest.raises(StorageError) as info:
        store.exists(parse_uri("s3://bucket/x"))
    assert "127.0.0.1:1" in str(info.value) and SECRET not in str(info.value)


def test_failed_job_status_and_logs_never_show_endpoint_credentials(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRAINFORGE_S3_ENDPOINT_URL", f"http://trainforge:{SECRET}@127.0.0.1:1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "a")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "b")
    job = trainforge.submit_job(str(env_printing_trainer(tmp_path / "src")), data="s3://bucket/train/",
                                backend=LocalBackend("process"))
    status = job.wait(timeout=120, raise_on_failure=False)
    assert status.phase == Phase.FAILED
    assert "127.0.0.1:1" in (status.failure_reason or "")  # the endpoint is named, without its secret
    written = [p for p in (home / "jobs" / job.name).rglob("*") if p.is_file()]
    assert any(p.name == "status.json" for p in written)
    for path in written:
        assert SECRET not in path.read_text(errors="replace"), path


def test_stager_failure_file_and_stderr_never_show_endpoint_credentials(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    job = parse_job({"metadata": {"name": "j"}, "spec": {
        "image": "img", "inputs": [{"channel": "train", "uri": "s3://bucket/train/"}]}})
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env = {**keep, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "sdk"),
           "TRAINFORGE_JOB": job.model_dump_json(by_alias=True), "TRAINFORGE_HOME": str(tmp_path / "home"),
           "AWS_ENDPOINT_URL": f"http://trainforge:{SECRET}@127.0.0.1:1",
           "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b", "AWS_DEFAULT_REGION": "us-east-1"}
    result = subprocess.run([sys.executable, "-m", "trainforge.stage", "in", "--root", str(tmp_path / "ml")],
                            env=env, capture_output=True, text=True, timeout=120, check=False)
    failure = (tmp_path / "ml" / "output" / "failure").read_text()
    assert result.returncode == 1 and "127.0.0.1:1" in failure, result.stderr
    assert SECRET not in failure and SECRET not in result.stderr + result.stdout


def test_controller_log_lines_never_show_endpoint_credentials() -> None:
    import logging

    from trainforge_controller.main import _JsonFormatter

    record = logging.LogRecord("trainforge.controller", logging.WARNING, __file__, 1,
                               "reading results of %s: %s", ("ns/j", f"cannot reach http://k:{SECRET}@m:9000/b"),
                               None)
    line = json.loads(_JsonFormatter().format(record))
    assert line["msg"] == "reading results of ns/j: cannot reach http://***@m:9000/b"


def test_controller_fails_a_custom_resource_that_sets_a_contract_variable(harness: Any) -> None:
    """kubectl apply skips the SDK's validation: the controller applies the same rule."""
    harness.submit("overrides", env={"SM_MODEL_DIR": "/tmp/elsewhere"})
    status = harness.wait_phase("overrides", "Failed")["status"]
    assert status["failureReason"].startswith("invalid spec: spec.env.SM_MODEL_DIR (key): 'SM_MODEL_DIR' is reserved")
    assert harness.jobs("overrides") == []  # no pod ever ran with it
