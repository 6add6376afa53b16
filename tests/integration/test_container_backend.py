"""The container backend end to end: the real base and example Dockerfiles
built with the docker SDK on the test bed's Podman, jobs submitted with
``submit_job(..., backend="container")``, data, checkpoints and models in the
real MinIO. Images and their torch: see tests/integration/conftest.py."""

from __future__ import annotations

import json
import os
import re
import signal
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import trainforge
from trainforge.backends import get_backend
from trainforge.backends.local.container import LABEL_JOB
from trainforge.config import load_settings
from trainforge.errors import BackendError, EngineUnavailable, ImageNotFound
from trainforge.examples import write_digits_dataset
from trainforge.spec import Phase

pytestmark = pytest.mark.slow

DIGITS_METRICS = {"validation:accuracy": "val_acc=([0-9.]+)", "train:loss": "train_loss=([0-9.eE+-]+)"}
EPOCH = re.compile(r"^epoch=(\d+) ", re.MULTILINE)
# The container backend's default user: the submitter, or 65532 for root (never the image's choice).
TRAINER_UID = os.getuid() if os.getuid() != 0 else 65532


@pytest.fixture
def job_env(container_engine: Any, minio_bucket: Any, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A private trainforge home, DOCKER_HOST on the test bed's Podman and
    AWS_* on this test's bucket (the supervisor inherits them). Jobs are
    detached processes: any still running afterwards is stopped."""
    monkeypatch.setenv("TRAINFORGE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DOCKER_HOST", container_engine.docker_host)
    for key, value in minio_bucket.env().items():
        monkeypatch.setenv(key, value)
    yield minio_bucket
    jobs = [job.name for job in trainforge.list_jobs(backend="container")]
    for name in jobs:
        trainforge.get_job(name, backend="container").stop()
    for name in jobs:
        trainforge.get_job(name, backend="container").wait(timeout=60, raise_on_failure=False)


@pytest.fixture
def digits_data(job_env: Any, tmp_path: Path) -> dict[str, str]:
    """The digits dataset in this test's bucket: channel -> s3:// URI."""
    s3 = job_env.s3_client()
    uris = {}
    for channel, folder in write_digits_dataset(tmp_path / "digits").items():
        for path in folder.iterdir():
            s3.upload_file(str(path), job_env.name, f"datasets/digits/{channel}/{path.name}")
        uris[channel] = job_env.uri(f"datasets/digits/{channel}/")
    return uris


@pytest.fixture
def torch_backend(job_env: Any, torch_runtime: Any) -> Any:
    """The container backend with this run's PyTorch mounted into the container."""
    return get_backend("container", volumes=torch_runtime.volume)


@pytest.fixture
def submit_slow_digits(example_images: dict[str, str], torch_backend: Any, torch_runtime: Any,
                       digits_data: dict[str, str], job_env: Any) -> Callable[..., trainforge.Job]:
    """Submits the digits image with a one-second pause per epoch (time to act mid-training)."""
    def submit(epochs: int, **options: Any) -> trainforge.Job:
        return trainforge.submit_job(
            example_images["digits-pytorch"], data=digits_data, backend=torch_backend,
            hparams={"epochs": str(epochs), "sleep_per_epoch": "1"}, output=job_env.uri("models/"),
            env=torch_runtime.env, **options)
    return submit


def containers_of(docker_client: Any, job: str) -> list[Any]:
    return docker_client.containers.list(all=True, filters={"label": f"{LABEL_JOB}={job}"})


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.2)


def follow_until(job: trainforge.Job, predicate: Callable[[str], bool], timeout: float) -> list[str]:
    """Log lines until one matches (the job must still be running then)."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    for line in job.logs(follow=True):
        seen.append(line)
        if predicate(line):
            return seen
        assert time.monotonic() < deadline, f"no matching line within {timeout} s:\n" + "\n".join(seen)
    raise AssertionError("the job ended before the expected line:\n" + "\n".join(seen))


def attempts(job: trainforge.Job) -> list[str]:
    """The job's log split per attempt."""
    return "\n".join(job.logs()).split("--- attempt ")


def s3_keys(bucket: Any, prefix: str) -> list[str]:
    listing = bucket.s3_client().list_objects_v2(Bucket=bucket.name, Prefix=prefix)
    return sorted(o["Key"] for o in listing.get("Contents", []))


def test_digits_trains_in_a_container_with_data_and_model_in_minio(
    example_images: dict[str, str], torch_backend: Any, torch_runtime: Any, digits_data: dict[str, str],
    job_env: Any, docker_client: Any, tmp_path: Path,
) -> None:
    started = time.monotonic()
    job = trainforge.submit_job(
        example_images["digits-pytorch"], data=digits_data, hparams={"epochs": "6"},
        backend=torch_backend, output=job_env.uri("models/"), checkpoints=job_env.uri("ckpt/digits/"),
        metrics=DIGITS_METRICS, env=torch_runtime.env,
    )
    status = job.wait(timeout=300)
    elapsed = time.monotonic() - started
    print(f"digits in a container: {elapsed:.1f} s from submit to Completed")

    assert status.phase == Phase.COMPLETED and status.attempts == 1
    assert status.final_metrics["validation:accuracy"] >= 0.85
    log = "\n".join(job.logs())
    assert [int(e) for e in EPOCH.findall(log)] == [1, 2, 3, 4, 5, 6]
    assert "host algo-1, attempt 1" in log
    frame = job.metrics()
    assert sorted(frame[frame["name"] == "validation:accuracy"]["step"].astype(int)) == [1, 2, 3, 4, 5, 6]

    assert status.artifacts.model == job_env.uri(f"models/default/{job.name}/output/model.tar.gz")
    assert f"models/default/{job.name}/output/model.tar.gz" in s3_keys(job_env, "models/")
    assert s3_keys(job_env, "ckpt/digits/")[-2:] == ["ckpt/digits/epoch-0005.pt", "ckpt/digits/epoch-0006.pt"]
    model = job.download_model(tmp_path / "model")
    assert json.loads((model / "model.json").read_text())["architecture"]["classes"] == 10
    assert (model / "model.pt").stat().st_size > 10_000

    # The trainer ran as the backend's non-root user, and its container is gone.
    run_dir = load_settings().jobs_root / job.name / "run"
    assert (run_dir / "model" / "model.pt").stat().st_uid == TRAINER_UID
    assert containers_of(docker_client, job.name) == []


def test_a_killed_container_resumes_from_its_last_checkpoint_on_retry(
    submit_slow_digits: Callable[..., trainforge.Job], job_env: Any, docker_client: Any,
) -> None:
    job = submit_slow_digits(6, max_attempts=2, checkpoints=job_env.uri("ckpt/killed/"), metrics=DIGITS_METRICS)
    follow_until(job, lambda line: line.startswith("epoch=3 "), timeout=180)
    # The epoch's checkpoint is written right after its line; then the trainer idles.
    run_dir = load_settings().jobs_root / job.name / "run"
    wait_for(lambda: (run_dir / "checkpoints" / "epoch-0003.pt").exists(), 30, "the epoch 3 checkpoint")
    (container,) = containers_of(docker_client, job.name)
    container.kill()  # SIGKILL: no chance to clean up, as when a machine dies

    status = job.wait(timeout=300)
    assert status.phase == Phase.COMPLETED and status.attempts == 2
    first, second = attempts(job)[0], attempts(job)[1]
    done_first = [int(e) for e in EPOCH.findall(first)]
    assert 3 <= max(done_first) < 6
    resumed = int(re.search(r"resumed from checkpoint epoch=(\d+)", second).group(1))  # type: ignore[union-attr]
    assert resumed >= 3
    assert [int(e) for e in EPOCH.findall(second)] == list(range(resumed + 1, 7))
    assert "attempt 2" in second
    assert s3_keys(job_env, "ckpt/killed/")[-1] == "ckpt/killed/epoch-0006.pt"
    assert containers_of(docker_client, job.name) == []


def test_stop_sends_sigterm_and_the_trainer_checkpoints(
    submit_slow_digits: Callable[..., trainforge.Job], job_env: Any, docker_client: Any,
) -> None:
    job = submit_slow_digits(50, checkpoints=job_env.uri("ckpt/stopped/"))
    follow_until(job, lambda line: line.startswith("epoch=2 "), timeout=180)
    stopped_at = time.monotonic()
    job.stop()
    status = job.wait(timeout=120, raise_on_failure=False)
    assert time.monotonic() - stopped_at < 30  # SIGTERM ends the idle epoch at once, no kill needed
    assert status.phase == Phase.STOPPED
    assert status.failure_reason is not None
    assert "stopped by SIGTERM after epoch" in status.failure_reason
    assert status.artifacts.model is None
    assert s3_keys(job_env, "ckpt/stopped/")
    assert containers_of(docker_client, job.name) == []


def test_a_dead_supervisor_is_reported_and_its_container_removed(
    submit_slow_digits: Callable[..., trainforge.Job], torch_backend: Any, docker_client: Any,
) -> None:
    job = submit_slow_digits(50)
    follow_until(job, lambda line: line.startswith("epoch=1 "), timeout=180)
    jobdir = torch_backend.jobdir(job.name)
    record = jobdir.read_trainer()
    assert record is not None and record["kind"] == "container"
    assert [c.id for c in containers_of(docker_client, job.name)] == [record["id"]]
    pid = jobdir.supervisor_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    status = wait_for(lambda: job.status() if job.phase.finished else None, timeout=30,
                      what="the dead supervisor to be noticed")
    assert status.phase == Phase.FAILED and "supervisor process died" in (status.failure_reason or "")
    assert containers_of(docker_client, job.name) == []  # not left training behind a Failed status
    assert jobdir.read_trainer() is None


def _csv_channel(bucket: Any, tmp_path: Path, rows: list[tuple[float, float]]) -> str:
    folder = tmp_path / "csv"
    folder.mkdir()
    (folder / "part-0.csv").write_text("x,y\n" + "".join(f"{x},{y}\n" for x, y in rows))
    bucket.s3_client().upload_file(str(folder / "part-0.csv"), bucket.name, "tables/train/part-0.csv")
    return bucket.uri("tables/train/")


def test_the_sagemaker_compat_trainer_runs_unchanged(
    example_images: dict[str, str], job_env: Any, tmp_path: Path,
) -> None:
    train = _csv_channel(job_env, tmp_path, [(1, 2), (2, 4), (3, 9)])
    job = trainforge.submit_job(
        example_images["sagemaker-compat"], data={"train": train}, backend="container",
        output=job_env.uri("models/"), metrics={"mean": "mean=([0-9.]+)", "rows": "rows=(\\d+)"},
    )
    status = job.wait(timeout=120)
    assert status.final_metrics == {"mean": pytest.approx(5.0), "rows": 3.0}
    log = "\n".join(job.logs())
    assert "host algo-1 of ['algo-1']; channels ['train']" in log
    archive = tmp_path / "output.tar.gz"
    job_env.s3_client().download_file(job_env.name, f"models/default/{job.name}/output/output.tar.gz", str(archive))
    with tarfile.open(archive) as tar:
        summary = json.load(tar.extractfile("summary.json"))  # type: ignore[arg-type]
    assert summary == {"files": ["part-0.csv"], "rows": 3}
    model = job.download_model(tmp_path / "model")
    assert json.loads((model / "model.json").read_text())["mean"] == pytest.approx(5.0)


def test_fastfile_channels_of_the_embedded_store_resolve_inside_the_container(
    example_images: dict[str, str], job_env: Any, tmp_path: Path,
) -> None:
    from trainforge.storage import open_store

    folder = tmp_path / "table"
    folder.mkdir()
    (folder / "part-0.csv").write_text("x,y\n1,10\n2,20\n")
    uri = "local://datasets/linked/train/"
    store = open_store(uri)
    store.ensure_bucket(uri)
    store.upload_dir(str(folder), uri)
    job = trainforge.submit({"metadata": {"generateName": "fastfile-"}, "spec": {
        "image": example_images["sagemaker-compat"],
        "inputs": [{"channel": "train", "uri": uri, "mode": "FastFile"}],
        "metrics": [{"name": "mean", "regex": "mean=([0-9.]+)"}],
    }}, backend="container")
    status = job.wait(timeout=120)
    assert status.final_metrics == {"mean": pytest.approx(15.0)}
    channel = load_settings().jobs_root / job.name / "run" / "input" / "data" / "train"
    assert channel.is_dir() and list(channel.iterdir()) == []  # mounted read-only, not copied


def test_the_user_option_runs_the_trainer_as_that_user(
    example_images: dict[str, str], job_env: Any, tmp_path: Path,
) -> None:
    train = _csv_channel(job_env, tmp_path, [(1, 2)])
    backend = get_backend("container", user="4242:4343")
    job = trainforge.submit_job(example_images["sagemaker-compat"], data={"train": train}, backend=backend,
                                output=job_env.uri("models/"))
    assert job.wait(timeout=120).phase == Phase.COMPLETED
    written = load_settings().jobs_root / job.name / "run" / "model" / "model.json"
    assert (written.stat().st_uid, written.stat().st_gid) == (4242, 4343)


def test_the_failure_file_and_a_nonzero_exit_give_the_failure_reason(
    example_images: dict[str, str], job_env: Any, tmp_path: Path, docker_client: Any,
) -> None:
    train = _csv_channel(job_env, tmp_path, [(1, 2)])
    job = trainforge.submit_job(
        example_images["sagemaker-compat"], data={"train": train}, backend="container",
        hparams={"min_rows": "5"}, max_attempts=1, output=job_env.uri("models/"),
    )
    status = job.wait(timeout=120, raise_on_failure=False)
    assert status.phase == Phase.FAILED
    assert status.failure_reason is not None
    assert status.failure_reason.startswith("ValueError: found 1 rows in 1 CSV files")
    assert "need at least 5" in status.failure_reason
    assert status.artifacts.model is None
    assert containers_of(docker_client, job.name) == []
    with pytest.raises(trainforge.JobFailed, match="need at least 5"):
        job.wait(timeout=5)


def test_gpu_instance_on_podman_is_refused_at_submit_or_runs_on_cpu_when_allowed(
    example_images: dict[str, str], job_env: Any, tmp_path: Path,
) -> None:
    train = _csv_channel(job_env, tmp_path, [(1, 2), (3, 4)])
    with pytest.raises(BackendError) as raised:
        trainforge.submit_job(example_images["sagemaker-compat"], data={"train": train},
                              backend="container", instance="gpu-1x", output=job_env.uri("models/"))
    assert "asks for 1 GPU(s), but Podman's Docker API does not pass GPUs" in str(raised.value)
    assert "on_missing_gpus='cpu'" in str(raised.value)
    assert trainforge.list_jobs(backend="container") == []

    cpu = get_backend("container", on_missing_gpus="cpu")
    job = trainforge.submit_job(example_images["sagemaker-compat"], data={"train": train}, backend=cpu,
                                instance="gpu-1x", output=job_env.uri("models/"))
    assert job.wait(timeout=120).phase == Phase.COMPLETED
    assert "running on the CPU (on_missing_gpus='cpu')" in next(iter(job.logs()))


def test_an_unknown_image_is_a_clear_error_at_submit(job_env: Any, tmp_path: Path) -> None:
    image = "localhost/trainforge-test/no-such-image:1"
    with pytest.raises(ImageNotFound, match=re.escape(repr(image))) as raised:
        trainforge.submit_job(image, data={"train": job_env.uri("nothing/")}, backend="container")
    assert "could not be pulled" in str(raised.value)
    assert not (tmp_path / "home" / "jobs").exists() or not any((tmp_path / "home" / "jobs").iterdir())


def test_an_unreachable_engine_is_a_clear_error_at_submit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRAINFORGE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/missing.sock")
    with pytest.raises(EngineUnavailable, match="cannot reach the container engine at unix://.*missing.sock"):
        trainforge.submit_job("localhost/whatever:1", backend="container")



@pytest.fixture(scope="module")
def burst_image(container_engine: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The test bed's Python with a ``train`` that prints 3,000 lines to stdout,
    one to stderr, and exits at once: nothing left for a log follower to catch up on."""
    context = tmp_path_factory.mktemp("burst")
    (context / "train").write_text("#!/usr/bin/env python3\nimport sys\n"
                                   "sys.stdout.write(''.join(f'line {i}\\n' for i in range(3000)))\n"
                                   "sys.stdout.flush()\nprint('the end', file=sys.stderr)\n")
    (context / "Dockerfile").write_text("ARG BASE\nFROM ${BASE}\nCOPY --chmod=755 train /usr/local/bin/train\n")
    client = container_engine.docker_client()
    try:
        from tests.integration.conftest import build_image

        return build_image(client, context, "localhost/trainforge-test/burst:session",
                           buildargs={"BASE": container_engine.base_image})
    finally:
        client.close()


def test_a_trainer_that_exits_at_once_loses_no_output_and_a_stale_container_gives_way(
    container_engine: Any, docker_client: Any, burst_image: str, tmp_path: Path,
) -> None:
    """The launcher attaches to the container before it starts it (no log
    follower racing the exit), and a container left with the attempt's name
    (a supervisor that died) is removed when the create finds the name taken."""
    from trainforge.backends.local.container import ContainerLauncher, container_name

    run_dir = tmp_path / "job" / "run"
    run_dir.mkdir(parents=True)
    env = {"TRAINFORGE_JOB_NAME": "burst", "TRAINFORGE_ATTEMPT": "1"}
    stale = docker_client.containers.create(burst_image, ["train"], name=container_name(run_dir, "burst", "1"))
    launched = ContainerLauncher(docker_host=container_engine.docker_host).launch(burst_image, run_dir, env, 0)
    try:
        lines = list(launched.lines())
        assert launched.wait(timeout=60) == 0
    finally:
        launched.cleanup()
    # stdout and stderr are two pipes to the engine: their relative order is not kept,
    # but a frame of one never cuts a line of the other (one splitter per stream).
    assert [line for line in lines if line != "the end"] == [f"line {i}" for i in range(3000)]
    assert lines.count("the end") == 1
    assert stale.id not in [c.id for c in docker_client.containers.list(all=True)]


def test_submit_looks_up_the_image_once_and_a_launch_without_it_says_so(
    container_engine: Any, docker_client: Any, burst_image: str, tmp_path: Path,
) -> None:
    """check() before an upload and again at submit: the second is the first's
    answer (for IMAGE_CHECK_REUSE_SECONDS). An image removed in between fails
    the launch with ImageNotFound naming it, never something else."""
    from trainforge.backends.local.container import ContainerLauncher

    tag = "localhost/trainforge-test/burst-removed:1"
    docker_client.images.get(burst_image).tag("localhost/trainforge-test/burst-removed", "1")
    launcher = ContainerLauncher(docker_host=container_engine.docker_host, pull="never")
    launcher.check(tag)
    docker_client.images.remove(tag)
    launcher.check(tag)  # answered from the first look-up
    with pytest.raises(ImageNotFound, match=re.escape(repr(tag))):
        launcher.launch(tag, tmp_path, {"TRAINFORGE_JOB_NAME": "removed"}, 0)
    with pytest.raises(ImageNotFound, match="the pull option is 'never'"):
        ContainerLauncher(docker_host=container_engine.docker_host, pull="never").check(tag)
