"""The parts of trainforge.images, trainforge.scaffold and the container
launcher that need no container engine: argument checks, error messages,
the scaffold's files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainforge.backends.local.container import (
    ContainerLauncher, container_name, default_shm_size, parse_volumes,
)
from trainforge.errors import (
    BackendError, EngineUnavailable, ImageBuildError, RegistryAuthError, RegistryError, ScaffoldError,
)
from trainforge.images import _push_error, _registry, build, connect
from trainforge.scaffold import TEMPLATE_DIR, init
from trainforge.spec.loading import parse_job

GiB = 1 << 30


# -- images -------------------------------------------------------------------

def test_build_without_a_dockerfile_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(ImageBuildError, match=f"no Dockerfile at {tmp_path}/Dockerfile"):
        build(tmp_path, "x:1", docker_host="unix:///nonexistent.sock")
    with pytest.raises(ImageBuildError, match=f"no Dockerfile at {tmp_path}/docker/Dockerfile.gpu"):
        build(tmp_path, "x:1", dockerfile="docker/Dockerfile.gpu")
    with pytest.raises(ImageBuildError, match="is not a directory"):
        build(tmp_path / "missing", "x:1")


def test_push_needs_a_tag(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    with pytest.raises(ImageBuildError, match="push needs a tag"):
        build(tmp_path, None, push=True)


def test_an_unreachable_engine_names_its_address_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailable) as raised:
        connect(f"unix://{tmp_path}/nothing.sock")
    message = str(raised.value)
    assert f"unix://{tmp_path}/nothing.sock" in message and "DOCKER_HOST" in message


@pytest.mark.parametrize(("tag", "registry"), [
    ("mnist:1", "docker.io"),
    ("team/mnist:1", "docker.io"),
    ("registry.example.com/team/mnist:1", "registry.example.com"),
    ("127.0.0.1:5000/mnist", "127.0.0.1:5000"),
    ("localhost/mnist:2", "localhost"),
])
def test_registry_of_a_tag(tag: str, registry: str) -> None:
    assert _registry(tag) == registry


@pytest.mark.parametrize(("message", "kind"), [
    ("unauthorized: authentication required", RegistryAuthError),
    ("denied: requested access to the resource is denied", RegistryAuthError),
    ("failed to authorize: 401 Unauthorized", RegistryAuthError),
    ("no basic auth credentials", RegistryAuthError),
    ("dial tcp 127.0.0.1:1: connect: connection refused", RegistryError),
])
def test_push_errors_are_classified(message: str, kind: type[Exception]) -> None:
    error = _push_error("registry.example.com/team/mnist:1", "registry.example.com", message)
    assert type(error) is kind
    assert message in str(error)
    if kind is RegistryAuthError:
        assert "docker login registry.example.com" in str(error)


# -- container launcher -------------------------------------------------------------

def test_volumes_option_parses_docker_syntax(tmp_path: Path) -> None:
    assert parse_volumes(None) == {}
    assert parse_volumes(f"{tmp_path}:/data:ro, {tmp_path}/b:/b") == {
        str(tmp_path): {"bind": "/data", "mode": "ro"},
        str(tmp_path / "b"): {"bind": "/b", "mode": "rw"},
    }
    assert parse_volumes([f"{tmp_path}:/x:rw"]) == {str(tmp_path): {"bind": "/x", "mode": "rw"}}
    for bad in ("/a", "/a:relative", "/a:/b:rx", ":/b"):
        with pytest.raises(BackendError, match="volumes"):
            parse_volumes(bad)


def test_shm_is_a_quarter_of_memory_within_bounds() -> None:
    assert default_shm_size(2 * GiB) == GiB
    assert default_shm_size(24 * GiB) == 6 * GiB
    assert default_shm_size(1024 * GiB) == 32 * GiB
    assert GiB <= default_shm_size() <= 32 * GiB


def test_container_names_are_deterministic_per_job_folder(tmp_path: Path) -> None:
    one = container_name(tmp_path / "home-a" / "jobs" / "mnist" / "run", "mnist", "2")
    assert one == container_name(tmp_path / "home-a" / "jobs" / "mnist" / "run", "mnist", "2")
    assert one.startswith("trainforge-mnist-2-")
    assert one != container_name(tmp_path / "home-b" / "jobs" / "mnist" / "run", "mnist", "2")


@pytest.mark.parametrize(("options", "field"), [
    ({"pull": "always"}, "pull"), ({"on_missing_gpus": "ignore"}, "on_missing_gpus"), ({"init": "maybe"}, "init"),
])
def test_bad_launcher_options_are_named(options: dict[str, str], field: str) -> None:
    with pytest.raises(BackendError, match=f"option {field}"):
        ContainerLauncher(**options)


def test_unknown_launcher_options_are_named_with_the_known_ones() -> None:
    with pytest.raises(BackendError, match=r"unknown container backend option\(s\) gpu, shm \(known: docker_host"):
        ContainerLauncher(shm="1g", gpu="all")  # type: ignore[arg-type]


def test_constructing_the_launcher_needs_no_engine() -> None:
    launcher = ContainerLauncher(docker_host="unix:///nonexistent.sock", init="false", shm_size="2g")
    assert launcher.layout(Path("/anywhere")).root == "/opt/ml"
    assert launcher.init is False and launcher.shm_size == "2g"
    with pytest.raises(EngineUnavailable, match="unix:///nonexistent.sock"):
        launcher.check("anything:1")


# -- scaffold -------------------------------------------------------------------

def test_init_writes_a_complete_project(tmp_path: Path) -> None:
    project = init("fraud-model", tmp_path / "fraud-model")
    files = sorted(p.relative_to(project).as_posix() for p in project.rglob("*") if p.is_file())
    assert files == [".dockerignore", "Dockerfile", "README.md", "job.json", "requirements.txt",
                     "trainer/__init__.py", "trainer/start.py"]
    for path in project.rglob("*"):
        if path.is_file():
            assert "{{" not in path.read_text(), path
    dockerfile = (project / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=trainforge/pytorch-cpu:latest" in dockerfile
    assert 'ENTRYPOINT ["python", "-m", "trainer.start"]' in dockerfile
    job = parse_job(json.loads((project / "job.json").read_text()))
    assert job.spec.image == "fraud-model:latest"
    assert job.metadata.generate_name == "fraud-model-"
    assert (project / "trainer" / "start.py").read_text() == (TEMPLATE_DIR / "trainer" / "start.py").read_text()


def test_init_fills_in_the_base_and_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    project = init("demo", base_image="registry.example.com/tf/pytorch-cuda:0.1.0", image="registry.example.com/demo:7")
    assert project == Path("demo")
    assert "ARG BASE_IMAGE=registry.example.com/tf/pytorch-cuda:0.1.0" in (project / "Dockerfile").read_text()
    assert json.loads((project / "job.json").read_text())["spec"]["image"] == "registry.example.com/demo:7"


def test_init_refuses_bad_names_and_existing_projects(tmp_path: Path) -> None:
    for bad in ("Fraud", "1st", "a_b", "-x", "x" * 64, ""):
        with pytest.raises(ScaffoldError, match="project name"):
            init(bad, tmp_path / "p")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(ScaffoldError, match="already exists and is not empty"):
        init("taken", tmp_path / "taken")
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"
    (tmp_path / "empty").mkdir()
    assert (init("empty", tmp_path / "empty") / "job.json").is_file()
