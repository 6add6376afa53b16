"""``trainforge build`` and ``trainforge init`` (trainforge.images and
trainforge.scaffold) against the test bed's Podman: real builds, a real
failed step, a push to a registry that is not there, and a freshly scaffolded
project that builds and runs as a local container job without edits."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

import trainforge
from trainforge.errors import ImageBuildError, RegistryError
from trainforge.images import build
from trainforge.scaffold import DEFAULT_BASE_IMAGE, init
from trainforge.spec import Phase

pytestmark = pytest.mark.slow


def test_build_streams_its_output_and_returns_the_image(
    container_engine: Any, docker_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "Dockerfile").write_text(
        f"FROM {container_engine.base_image}\nRUN echo building-step-two > /opt/marker\n")
    monkeypatch.setenv("DOCKER_HOST", container_engine.docker_host)  # build() connects by itself
    lines: list[str] = []
    image = build(tmp_path, "localhost/trainforge-test/streamed:1", output=lines.append)
    assert image.tag == "localhost/trainforge-test/streamed:1" and image.digest is None
    assert image.id.removeprefix("sha256:").startswith(docker_client.images.get(image.tag).id.removeprefix("sha256:")[:12])
    assert any("building-step-two" in line for line in lines)
    assert all("\n" not in line for line in lines)


def test_a_failed_step_names_the_step_and_shows_its_log(
    container_engine: Any, docker_client: Any, tmp_path: Path,
) -> None:
    (tmp_path / "Dockerfile").write_text(
        f"FROM {container_engine.base_image}\n"
        "RUN echo fine\n"
        "RUN echo 'about to fail: missing-dependency-xyz' && exit 7\n")
    with pytest.raises(ImageBuildError) as raised:
        build(tmp_path, "localhost/trainforge-test/broken:1", client=docker_client, output=None)
    message = str(raised.value)
    assert "build of localhost/trainforge-test/broken:1 failed at STEP 3/3" in message
    assert "about to fail: missing-dependency-xyz" in message  # the step's own output
    assert "exit" in message.lower()
    assert "about to fail" in raised.value.log


def test_pushing_to_an_unreachable_registry_is_a_registry_error(
    container_engine: Any, docker_client: Any, tmp_path: Path,
) -> None:
    (tmp_path / "Dockerfile").write_text(f"FROM {container_engine.base_image}\n")
    tag = "127.0.0.1:1/trainforge-test/pushed:1"   # nothing listens on port 1
    with pytest.raises(RegistryError, match="push of 127.0.0.1:1/trainforge-test/pushed:1 to 127.0.0.1:1 failed"):
        build(tmp_path, tag, push=True, client=docker_client, output=None)


def test_a_scaffolded_project_builds_and_runs_as_a_container_job_without_edits(
    container_engine: Any, docker_client: Any, trainforge_base_image: Any, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The scaffold's Dockerfile builds FROM trainforge/pytorch-cpu:latest: give
    # the test bed's base image that name, so nothing in the project changes.
    repository, _, version = DEFAULT_BASE_IMAGE.rpartition(":")
    docker_client.images.get(trainforge_base_image.tag).tag(repository, version)
    monkeypatch.setenv("TRAINFORGE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DOCKER_HOST", container_engine.docker_host)

    project = init("scaffold-e2e", tmp_path / "scaffold-e2e")
    spec = json.loads((project / "job.json").read_text())
    started = time.monotonic()
    image = build(project, spec["spec"]["image"], output=None)
    built = time.monotonic() - started
    job = trainforge.submit(spec, backend="container")
    status = job.wait(timeout=120)
    print(f"scaffold: build {built:.1f} s, job {time.monotonic() - started - built:.1f} s")

    assert image.tag == "scaffold-e2e:latest"
    assert status.phase == Phase.COMPLETED
    log = "\n".join(job.logs())
    assert "no 'train' channel: using 256 synthetic points" in log
    assert "epoch=20 loss=" in log
    frame = job.metrics()
    losses = frame[frame["name"] == "train:loss"]
    assert len(losses) == 20 and losses["value"].iloc[-1] < 0.05
    model = json.loads((job.download_model(tmp_path / "model") / "model.json").read_text())
    assert model["w"] == pytest.approx(3.0, abs=0.1) and model["b"] == pytest.approx(2.0, abs=0.1)


def test_the_scaffolded_trainer_runs_under_the_process_backend_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRAINFORGE_HOME", str(tmp_path / "home"))
    project = init("scaffold-process", tmp_path / "scaffold-process")
    data = tmp_path / "table.csv"
    data.write_text("x,y\n" + "".join(f"{x / 10},{2 * x / 10 - 1}\n" for x in range(-10, 11)))
    job = trainforge.submit_job(str(project), data=str(data), hparams={"epochs": "30"}, backend="process",
                                metrics={"train:loss": r"epoch=\d+ loss=([0-9.eE+-]+)"})
    status = job.wait(timeout=120)
    assert status.phase == Phase.COMPLETED
    assert "training on 21 rows for 30 epochs" in "\n".join(job.logs())
    model = json.loads((job.download_model(tmp_path / "model") / "model.json").read_text())
    assert model["w"] == pytest.approx(2.0, abs=0.05) and model["b"] == pytest.approx(-1.0, abs=0.05)
