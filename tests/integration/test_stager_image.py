"""containers/stager/Dockerfile: built on the test bed's Podman and run as a pod
would run it, staging in from the real MinIO over host networking.

No package index is reachable from inside an image build here (see
containers/base/README.md), so the stager's pinned wheels are downloaded on the
host with ``pip download`` (cached under the user's cache folder, per Python
version and requirements) into a copy of the build context, and the image is
built with ``PIP_NO_INDEX=1``: the Dockerfile's own offline path, the same pip
install as an online build.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.infra.binaries import cache_root
from tests.integration.conftest import build_image

REPO = Path(__file__).resolve().parents[2]
STAGER = REPO / "containers" / "stager"
STAGER_UID = 65532


def wheelhouse(python: tuple[int, int]) -> Path:
    """The stager's wheels for CPython ``python`` on x86-64 Linux, downloaded once."""
    requirements = (STAGER / "requirements.txt").read_bytes()
    digest = hashlib.sha256(requirements + repr(python).encode()).hexdigest()[:12]
    folder = cache_root() / "wheels-v1" / f"stager-cp{python[0]}{python[1]}-{digest}"
    if (folder / ".ok").exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(folder), "--only-binary=:all:",
         "--implementation", "cp", "--python-version", f"{python[0]}.{python[1]}",
         "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_28_x86_64",  # google-re2: 2_28
         "-r", str(STAGER / "requirements.txt"), "setuptools>=68"],
        capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
        pytest.skip(f"cannot download the stager's wheels: {result.stderr[-2000:]}")
    (folder / ".ok").touch()
    return folder


def build_context(target: Path, wheels: Path) -> Path:
    """What the Dockerfile COPYs, with the wheelhouse filled."""
    shutil.copytree(REPO / "sdk" / "trainforge", target / "sdk" / "trainforge",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copytree(STAGER, target / "containers" / "stager", ignore=shutil.ignore_patterns("*.whl"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, target / name)
    shutil.copy2(STAGER / ".dockerignore", target / ".dockerignore")
    for wheel in wheels.glob("*.whl"):
        shutil.copy2(wheel, target / "containers" / "stager" / "wheels" / wheel.name)
    return target


@pytest.fixture(scope="session")
def stager_image(container_engine: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    client = container_engine.docker_client()
    try:
        output = client.containers.run(container_engine.base_image, remove=True, entrypoint=[
            "python3", "-c", "import sys; print(*sys.version_info[:2])"])
        major, minor = (int(p) for p in output.split())
        context = build_context(tmp_path_factory.mktemp("stager-context"), wheelhouse((major, minor)))
        yield build_image(client, context, "localhost/trainforge-test/stager:session",
                          dockerfile="containers/stager/Dockerfile",
                          buildargs={"BASE_IMAGE": container_engine.base_image, "PIP_NO_INDEX": "1"})
    finally:
        client.close()


def test_stager_image_is_non_root_with_the_stage_entrypoint_and_labels(
    docker_client: Any, stager_image: str,
) -> None:
    config = docker_client.images.get(stager_image).attrs["Config"]
    assert config["Entrypoint"] == ["python", "-m", "trainforge.stage"]
    assert config["User"] == f"{STAGER_UID}:{STAGER_UID}"
    assert config["Labels"]["org.opencontainers.image.title"] == "trainforge-stager"
    assert config["Labels"]["org.opencontainers.image.version"] == "0.1.0"
    output = docker_client.containers.run(stager_image, ["--help"], remove=True).decode()
    assert "usage: python -m trainforge.stage" in output
    # Only the storage dependencies: the SDK's heavier ones stay out of the image.
    probe = ("import importlib.util as u; "
             "print([m for m in ('boto3', 'pydantic', 'yaml', 'kubernetes', 'docker', 'pandas', 'optuna') "
             "if u.find_spec(m)])")
    found = docker_client.containers.run(stager_image, entrypoint=["python", "-c", probe], remove=True)
    assert found.decode().strip() == "['boto3', 'pydantic', 'yaml']"


def test_stager_image_stages_in_from_minio(docker_client: Any, stager_image: str, minio_bucket: Any,
                                           tmp_path: Path) -> None:
    s3 = minio_bucket.s3_client()
    for i in range(4):
        s3.put_object(Bucket=minio_bucket.name, Key=f"data/train/part-{i}.csv", Body=f"rows {i}\n".encode())
    s3.put_object(Bucket=minio_bucket.name, Key="ckpt/epoch-1.pt", Body=b"weights")
    job = {"apiVersion": "trainforge.dev/v1alpha1", "kind": "TrainingJob",
           "metadata": {"name": "staged", "namespace": "team-a"},
           "spec": {"image": "example/trainer:1", "instance": {"type": "cpu-small", "count": 2},
                    "hyperparameters": {"lr": "0.1"},
                    "inputs": [{"channel": "train", "uri": minio_bucket.uri("data/train/"),
                                "distribution": "ShardedByS3Key"}],
                    "checkpoints": {"uri": minio_bucket.uri("ckpt/")}}}
    opt_ml = tmp_path / "opt-ml"
    opt_ml.mkdir()
    os.chmod(opt_ml, 0o777)  # an emptyDir: writable by the pod's non-root user
    output = docker_client.containers.run(
        stager_image, ["in"], remove=True, network_mode="host",
        environment={**minio_bucket.env(), "TRAINFORGE_JOB": json.dumps(job), "JOB_COMPLETION_INDEX": "1"},
        volumes={str(opt_ml): {"bind": "/opt/ml", "mode": "rw"}})
    said = output.decode()  # "staged 1 channel(s) for algo-2 (start-up .. s, .. MiB in .. s = .. MiB/s); restored ..."
    assert "staged 1 channel(s) for algo-2 (start-up " in said and "; restored 1 checkpoint file(s)" in said
    staged = sorted(p.name for p in (opt_ml / "input" / "data" / "train").iterdir())
    assert staged == ["part-1.csv", "part-3.csv"]  # host 2 of 2: every second key
    assert json.loads((opt_ml / "input" / "config" / "resourceconfig.json").read_text())["current_host"] == "algo-2"
    assert (opt_ml / "checkpoints" / "epoch-1.pt").read_bytes() == b"weights"
    assert (opt_ml / "checkpoints" / "epoch-1.pt").stat().st_uid == STAGER_UID
