"""The CI examples in examples/ci/ cannot rot: this test reads the GitHub
Actions workflow and the GitLab CI file, takes exactly the commands their
steps run (``run:``; ``before_script:`` + ``script:``), in order, and runs them
with bash against the real MinIO and the process backend: the digits example
trained for real (few epochs: the files' own ``EPOCHS`` variable), gated,
registered and promoted. The GitHub run registers version 1 and makes it
production; the GitLab run gates against it, registers 2 and promotes it.

Two things are not run, and the test checks that they are only these: steps
that ``uses:`` an action (checkout, setup-python, upload-artifact) and the one
``pip install`` line (this checkout is already importable here).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Bucket

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CI = REPO / "examples" / "ci"
BUCKET = "trainforge-ci"  # the bucket the example files name
EXPRESSION = re.compile(r"\$\{\{\s*(vars|secrets)\.([A-Z_]+)\s*\}\}")


def github_steps(path: Path, values: dict[str, str]) -> tuple[dict[str, str], list[str], list[str]]:
    """(env, commands, the actions it uses) of the workflow's one job."""
    doc = yaml.safe_load(path.read_text())
    triggers = doc.get("on", doc.get(True))  # YAML 1.1 reads a bare `on` as True
    assert {"push", "schedule"} <= set(triggers)

    def resolve(text: str) -> str:
        text = EXPRESSION.sub(lambda m: values[m.group(2)], str(text))
        assert "${{" not in text, f"an expression this test cannot give a value: {text}"
        return text

    (job,) = doc["jobs"].values()
    env = {k: resolve(v) for k, v in {**doc.get("env", {}), **job.get("env", {})}.items()}
    commands, actions = [], []
    for step in job["steps"]:
        if "uses" in step:
            actions.append(step["uses"].split("@")[0])
        else:
            commands.append(resolve(step["run"]))
    return env, commands, actions


def gitlab_steps(path: Path) -> tuple[dict[str, str], list[str]]:
    doc = yaml.safe_load(path.read_text())
    jobs = [v for k, v in doc.items() if isinstance(v, dict) and "script" in v]
    (job,) = jobs
    rules = " ".join(r["if"] for r in job["rules"])
    assert "schedule" in rules and "CI_DEFAULT_BRANCH" in rules
    return {k: str(v) for k, v in doc.get("variables", {}).items()}, [*job.get("before_script", []), *job["script"]]


def without_install(commands: list[str]) -> list[str]:
    installs = [c for c in commands if c.strip().startswith("pip install")]
    assert len(installs) == 1, installs
    return [c for c in commands if c not in installs]


@pytest.fixture
def ci_bucket(minio: Any) -> Iterator[Bucket]:
    bucket = Bucket(BUCKET, minio.endpoint, minio.access_key, minio.secret_key, minio.region)
    s3 = bucket.s3_client()
    s3.create_bucket(Bucket=BUCKET)
    yield bucket
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        objects = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if objects:
            s3.delete_objects(Bucket=BUCKET, Delete={"Objects": objects, "Quiet": True})
    s3.delete_bucket(Bucket=BUCKET)


def run_script(script: str, cwd: Path, env: dict[str, str]) -> str:
    # GitHub runs `bash --noprofile --norc -eo pipefail`; GitLab stops at the first failing line too.
    done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, f"{script}\nexit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def test_the_ci_examples_retrain_gate_register_and_promote(ci_bucket: Bucket, tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"  # what the runner checks out: only what the commands read
    checkout.mkdir()
    for folder in ("examples", "containers"):
        (checkout / folder).symlink_to(REPO / folder)
    venv_bin = str(Path(sys.executable).parent)
    base = {"PATH": f"{venv_bin}:{os.environ['PATH']}", "HOME": str(tmp_path), "LANG": "C.UTF-8",
            "PYTHONPATH": os.pathsep.join([str(REPO / "sdk"), str(REPO / "controller"), str(REPO)]),
            "TRAINFORGE_HOME": str(tmp_path / "home"), "MPLBACKEND": "Agg"}
    small = {"EPOCHS": "6"}

    # --- GitHub Actions -------------------------------------------------------------
    summary = tmp_path / "step-summary.md"
    env, commands, actions = github_steps(CI / "github-actions.yml", {
        "MINIO_ENDPOINT": ci_bucket.endpoint, "MINIO_ACCESS_KEY": ci_bucket.access_key,
        "MINIO_SECRET_KEY": ci_bucket.secret_key})
    assert actions == ["actions/checkout", "actions/setup-python", "actions/upload-artifact"]
    github = {"GITHUB_SHA": "1111111111111111111111111111111111111111", "GITHUB_SERVER_URL": "https://github.com",
              "GITHUB_REPOSITORY": "team/digits", "GITHUB_RUN_ID": "101", "GITHUB_ACTOR": "ci-bot",
              "GITHUB_STEP_SUMMARY": str(summary), "CI": "true"}
    outputs = [run_script(c, checkout, {**base, **env, **small, **github}) for c in without_install(commands)]
    first = json.loads((checkout / "gate" / "retrain.json").read_text())
    assert first["exitCode"] == 0 and first["registered"]["version"] == 1
    assert first["promoted"] == {"alias": "production", "from": None, "to": 1}
    assert first["gate"]["passed"] and first["gate"]["champion"]["version"] is None
    assert first["metrics"]["validation:accuracy"] >= 0.9
    text = summary.read_text()
    assert "Gate passed" in text and "Registered **digits@1**" in text and "Promoted `production`" in text
    assert "Learning curves: gate/curves.png (in the run's artifacts)." in text and "![" not in text
    assert (checkout / "gate" / "curves.png").stat().st_size > 0
    assert "digits@1  (production)" in outputs[-1]
    assert "ci          github-actions 1111111111111111111111111111111111111111  " \
           "https://github.com/team/digits/actions/runs/101" in outputs[-1]
    shutil.rmtree(checkout / "gate")

    # --- GitLab CI: gated against production (version 1), then promoted -----------
    variables, commands = gitlab_steps(CI / ".gitlab-ci.yml")
    gitlab = {"CI_COMMIT_SHA": "2222222222222222222222222222222222222222",
              "CI_PIPELINE_URL": "https://gitlab.example/team/digits/-/pipelines/7", "CI": "true",
              "MINIO_ENDPOINT": ci_bucket.endpoint, "MINIO_ACCESS_KEY": ci_bucket.access_key,
              "MINIO_SECRET_KEY": ci_bucket.secret_key}
    outputs = [run_script("\n".join(without_install(commands)), checkout, {**base, **variables, **small, **gitlab})]
    second = json.loads((checkout / "gate" / "retrain.json").read_text())
    assert second["exitCode"] == 0, second
    assert second["gate"]["champion"] == {"ref": "digits@production", "version": 1,
                                          "value": first["metrics"]["validation:accuracy"]}
    assert second["promoted"] == {"alias": "production", "from": 1, "to": 2}
    report = (checkout / "gate" / "report.md").read_text()
    assert "champion (digits@production = v1)" in report and "![learning curves" in report
    assert "(curves.png)" in report  # beside the report, linked relatively
    assert "digits@2  (production)" in outputs[-1] and "gitlab-ci 2222222222222222" in outputs[-1]

    # Both versions saw the same data: one manifest digest.
    from trainforge.config import Settings
    from trainforge.registry import ModelRegistry

    settings = Settings.model_validate({"home": str(tmp_path / "home"), "s3": {
        "endpoint_url": ci_bucket.endpoint, "access_key_id": ci_bucket.access_key,
        "secret_access_key": ci_bucket.secret_key, "region": ci_bucket.region}})
    registry = ModelRegistry(f"s3://{BUCKET}/registry/", settings=settings)
    v1, v2 = registry.versions("digits")
    assert v1.document["lineage"]["data"]["sha256"] == v2.document["lineage"]["data"]["sha256"]
    assert v1.document["lineage"]["hyperparameters"]["epochs"] == "6"
    assert registry.aliases("digits") == {"production": 2}
