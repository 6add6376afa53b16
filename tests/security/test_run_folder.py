"""Issue 9, point 1: a trainer never reaches the host through its run folder.

The hostile trainer (tests/trainers/hostile) plants symlinks in its run folder
that point at host files and folders, then the host side does what it always
does: reads the failure file, syncs and restores checkpoints, packs the model
and output, writes the config files of a retry, mounts FastFile channels. Each
test asserts that nothing of the host was read, published, written, mounted
or chmodded through them, on the process backend and on the container backend
(the real Podman; there the trainer runs as root in its container, the
strongest position a run folder can be attacked from). The mechanism itself,
trainforge.untrusted, is attacked directly first.
"""

from __future__ import annotations

import json
import os
import stat
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import trainforge
from trainforge import untrusted
from trainforge.backends import get_backend
from trainforge.config import load_settings
from trainforge.contract import Layout
from trainforge.spec import Phase, parse_job
from trainforge.staging import ArtifactURIs, restore_checkpoints, stage_out_model, sync_checkpoints
from trainforge.storage import open_store

from tests.integration.conftest import build_image, trainforge_base_image  # noqa: F401 (a fixture)

REPO = Path(__file__).resolve().parents[2]
HOSTILE = REPO / "tests" / "trainers" / "hostile"
SECRET = "host-secret-7c1e9"
TIMEOUT = 120


@pytest.fixture
def host(tmp_path: Path) -> Iterator[dict[str, Path]]:
    """Host things a trainer must never reach: a secret file, a 0700 folder
    holding it, an empty 0700 folder nothing may be written into."""
    secrets = tmp_path / "host-secrets"
    secrets.mkdir(mode=0o700)
    (secrets / "secret.txt").write_text(SECRET)
    empty = tmp_path / "host-empty"
    empty.mkdir(mode=0o700)
    os.chmod(secrets, 0o700)
    os.chmod(empty, 0o700)
    yield {"file": secrets / "secret.txt", "dir": secrets, "empty": empty}
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o700 and stat.S_IMODE(empty.stat().st_mode) == 0o700
    assert sorted(os.listdir(secrets)) == ["secret.txt"] and (secrets / "secret.txt").read_text() == SECRET


# --- the mechanism, attacked directly ------------------------------------------

def test_reading_never_follows_a_link_anywhere_on_the_path(tmp_path: Path, host: dict[str, Path]) -> None:
    root = tmp_path / "run"
    (root / "output").mkdir(parents=True)
    (root / "output" / "failure").symlink_to(host["file"])
    (root / "elsewhere").symlink_to(host["dir"])
    (root / "real").mkdir()
    (root / "real" / "ok.txt").write_text("fine")
    assert untrusted.read_file(str(root), "output/failure", 100) is None
    assert untrusted.read_file(str(root), "elsewhere/secret.txt", 100) is None  # a link as a parent
    assert untrusted.read_file(str(root), "real/ok.txt", 2) == b"fi"  # and the cap holds
    assert [e.rel for e in untrusted.walk(str(root))] == ["output", "real", "real/ok.txt"]
    assert list(untrusted.walk(str(root), "elsewhere")) == []
    with pytest.raises(ValueError):
        untrusted.read_file(str(root), "../host-secrets/secret.txt", 100)


def test_a_fifo_is_skipped_not_waited_on(tmp_path: Path) -> None:
    root = tmp_path / "run"
    (root / "output").mkdir(parents=True)
    os.mkfifo(root / "output" / "failure")
    assert untrusted.read_file(str(root), "output/failure", 100) is None
    assert list(untrusted.walk(str(root), "output")) == []


def test_writes_replace_planted_links_and_never_write_through_them(tmp_path: Path, host: dict[str, Path]) -> None:
    root = tmp_path / "run"
    (root / "input").mkdir(parents=True)
    (root / "input" / "config").symlink_to(host["empty"])
    (root / "model").symlink_to(host["empty"])
    (root / "ckpt").mkdir()
    (root / "ckpt" / "a.pt").symlink_to(host["file"])
    (root / "ckpt" / "sub").symlink_to(host["empty"])
    untrusted.write_file(str(root), "input/config/hyperparameters.json", b"{}")
    (root / "output" / "failure").mkdir(parents=True)  # a folder where a file goes
    untrusted.write_file(str(root), "output/failure", b"why")
    assert (root / "output" / "failure").read_bytes() == b"why"
    untrusted.reset_dir(str(root), "model")
    assert untrusted.scrub(str(root), "ckpt") == 2
    untrusted.remove(str(root), "input/config/hyperparameters.json")
    assert not (root / "model").is_symlink() and (root / "model").is_dir()
    assert os.listdir(root / "ckpt") == [] and not (root / "input" / "config").is_symlink()
    assert os.listdir(host["empty"]) == []


@pytest.mark.skipif(os.getuid() != 0, reason="giving files to another uid needs root")
def test_chown_never_follows_a_link(tmp_path: Path, host: dict[str, Path]) -> None:
    root = tmp_path / "run"
    (root / "model" / "sub").mkdir(parents=True)
    (root / "model" / "x").symlink_to(host["dir"])
    (root / "model" / "sub" / "y").symlink_to(host["file"])
    before = host["dir"].stat(), host["file"].stat()
    untrusted.chown_tree(str(root), "model", 4242, 4343)
    assert (root / "model" / "sub").stat().st_uid == 4242
    after = host["dir"].stat(), host["file"].stat()
    assert [(s.st_uid, s.st_gid, s.st_mode) for s in after] == [(s.st_uid, s.st_gid, s.st_mode) for s in before]


def test_staging_packs_syncs_and_restores_no_planted_link(
    tmp_path: Path, host: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRAINFORGE_HOME", str(tmp_path / "home"))
    job = parse_job({"metadata": {"name": "j"}, "spec": {"image": "x", "checkpoints": {"uri": "local://ckpt/j/"}}})
    layout = Layout(str(tmp_path / "run"))
    for folder in (layout.model_dir, layout.checkpoint_dir, layout.output_data_dir):
        os.makedirs(folder)
    Path(layout.model_dir, "model.txt").write_text("model")
    Path(layout.model_dir, "leak").symlink_to(host["file"])
    Path(layout.model_dir, "leaks").symlink_to(host["dir"])
    Path(layout.output_data_dir, "leak").symlink_to(host["file"])
    Path(layout.checkpoint_dir, "real.pt").write_text("w")
    Path(layout.checkpoint_dir, "x.pt").symlink_to(host["file"])
    Path(layout.checkpoint_dir, "d").symlink_to(host["dir"])
    assert sync_checkpoints(job, layout, scratch=str(tmp_path)) == 1
    assert [o.key for o in open_store("local://ckpt/").list("local://ckpt/j/")] == ["j/real.pt"]
    model, output = stage_out_model(layout, ArtifactURIs.for_job("local://models/", "default", "j"))
    assert output is None  # output/data held only a link
    with tarfile.open(open_store(model).local_path(model)) as tar:  # type: ignore[arg-type]
        assert tar.getnames() == ["model.txt"]

    # the retry's restore: a planted folder link must not receive the files
    open_store("local://ckpt/").write_bytes("local://ckpt/j/sub/a.pt", b"restored")
    Path(layout.checkpoint_dir, "sub").symlink_to(host["empty"])
    assert restore_checkpoints(job, layout) == 2
    assert Path(layout.checkpoint_dir, "sub", "a.pt").read_bytes() == b"restored"
    assert not Path(layout.checkpoint_dir, "sub").is_symlink() and os.listdir(host["empty"]) == []


# --- jobs on both local backends ----------------------------------------------------

def _hp(**values: Any) -> dict[str, str]:
    return {key: json.dumps(value) for key, value in values.items()}


class Runner:
    """Submits the hostile trainer on one backend; where its run folder is."""

    def __init__(self, kind: str, image: str, backend: Any, root_in_trainer: str):
        self.kind, self.image, self.backend, self.root_in_trainer = kind, image, backend, root_in_trainer

    def submit(self, hp: dict[str, str], **spec: Any) -> trainforge.Job:
        document = {"metadata": {"generateName": "hostile-"},
                    "spec": {"image": self.image, "hyperparameters": hp, **spec}}
        return trainforge.submit(document, backend=self.backend)

    def run_dir(self, job: trainforge.Job) -> Path:
        return load_settings().jobs_root / job.name / "run"


@pytest.fixture(scope="session")
def hostile_image(container_engine: Any, trainforge_base_image: Any) -> str:  # noqa: F811
    client = container_engine.docker_client()
    try:
        return build_image(client, HOSTILE, "localhost/trainforge-test/hostile:session",
                           buildargs={"BASE_IMAGE": trainforge_base_image.tag})
    finally:
        client.close()


@pytest.fixture
def container_runner(request: pytest.FixtureRequest, home: Path, monkeypatch: pytest.MonkeyPatch) -> Runner:
    engine = request.getfixturevalue("container_engine")
    image = request.getfixturevalue("hostile_image")
    monkeypatch.setenv("DOCKER_HOST", engine.docker_host)
    # Root in its container (no capabilities): owner of the whole run folder.
    return Runner("container", image, get_backend("container", user="0:0"), "/opt/ml")


@pytest.fixture(params=["process", pytest.param("container", marks=pytest.mark.slow)])
def runner(request: pytest.FixtureRequest, home: Path) -> Runner:
    if request.param == "container":
        return request.getfixturevalue("container_runner")  # type: ignore[no-any-return]
    return Runner("process", str(HOSTILE), "process", "")


def test_a_planted_failure_file_link_does_not_become_the_failure_reason(
    runner: Runner, host: dict[str, Path],
) -> None:
    job = runner.submit(_hp(plant={"output/failure": str(host["file"])}, fail_on=[1]),
                        retry={"maxAttempts": 1})
    status = job.wait(timeout=TIMEOUT, raise_on_failure=False)
    assert status.phase == Phase.FAILED
    assert "planted output/failure" in "\n".join(job.logs())
    assert SECRET not in (status.failure_reason or "") and SECRET not in status.message
    assert "exited with code 1 and wrote no failure file" in (status.failure_reason or "")


def test_planted_links_are_neither_uploaded_nor_packed(runner: Runner, host: dict[str, Path], tmp_path: Path) -> None:
    checkpoints = f"local://ckpt/{uuid.uuid4().hex[:8]}/"
    job = runner.submit(_hp(plant={"checkpoints/x.pt": str(host["file"]), "checkpoints/d": str(host["dir"]),
                                   "model/leak": str(host["file"]), "model/leaks": str(host["dir"]),
                                   "output/data/leak": str(host["file"])}),
                        checkpoints={"uri": checkpoints})
    status = job.wait(timeout=TIMEOUT)
    assert status.phase == Phase.COMPLETED
    assert "planted model/leak" in "\n".join(job.logs())
    stored = open_store(checkpoints).list(checkpoints)
    assert [o.key.rsplit("/", 1)[-1] for o in stored] == ["real.pt"]
    assert status.artifacts.output is None  # output/data held only a link
    model = job.download_model(tmp_path / "model")
    assert sorted(p.name for p in model.iterdir()) == ["model.txt"]


def test_a_model_folder_replaced_by_a_link_packs_nothing_of_the_host(
    runner: Runner, host: dict[str, Path], tmp_path: Path,
) -> None:
    job = runner.submit(_hp(plant={"model": str(host["dir"])}))
    assert job.wait(timeout=TIMEOUT).phase == Phase.COMPLETED
    assert "planted model ->" in "\n".join(job.logs())
    model = job.download_model(tmp_path / "model")
    assert list(model.iterdir()) == []


def test_a_retry_writes_nothing_through_planted_links(runner: Runner, host: dict[str, Path]) -> None:
    checkpoints = f"local://ckpt/{uuid.uuid4().hex[:8]}/"
    store = open_store(checkpoints)
    store.ensure_bucket(checkpoints)
    store.write_bytes(checkpoints + "sub/a.pt", b"saved")
    empty = str(host["empty"])
    job = runner.submit(_hp(plant={"checkpoints/sub": empty, "model": empty, "input/config": empty,
                                   "output": empty}, on=[1], fail_on=[1], report=["checkpoints/sub"]),
                        checkpoints={"uri": checkpoints}, retry={"maxAttempts": 2})
    status = job.wait(timeout=TIMEOUT)
    assert status.phase == Phase.COMPLETED and status.attempts == 2
    first, second = "\n".join(job.logs()).split("--- attempt 2")
    assert "planted output ->" in first and "planted input/config ->" in first
    assert "seen checkpoints/sub: dir ['a.pt']" in second  # restored into a real folder
    assert os.listdir(empty) == []  # and the host folder: still empty, still 0700 (the fixture checks)


def test_run_folders_are_never_world_writable(runner: Runner, host: dict[str, Path]) -> None:
    job = runner.submit(_hp(), checkpoints={"uri": f"local://ckpt/{uuid.uuid4().hex[:8]}/"})
    assert job.wait(timeout=TIMEOUT).phase == Phase.COMPLETED
    run_dir = runner.run_dir(job)
    writable = [str(p) for p in [run_dir, *run_dir.rglob("*")]
                if not p.is_symlink() and p.lstat().st_mode & stat.S_IWOTH]
    assert writable == []
    assert run_dir.stat().st_uid == os.getuid()


def test_fastfile_data_cannot_be_changed_by_the_trainer(runner: Runner, tmp_path: Path) -> None:
    uri = f"local://datasets/{uuid.uuid4().hex[:8]}/train/"
    store = open_store(uri)
    store.ensure_bucket(uri)
    store.write_bytes(uri + "part-0.csv", b"x,y\n1,2\n")
    job = runner.submit(_hp(scribble=["input/data/train/part-0.csv"], report=["input/data/train"]),
                        inputs=[{"channel": "train", "uri": uri, "mode": "FastFile"}])
    assert job.wait(timeout=TIMEOUT).phase == Phase.COMPLETED
    log = "\n".join(job.logs())
    assert "seen input/data/train: dir ['part-0.csv']" in log  # the data is there
    assert store.read_bytes(uri + "part-0.csv") == b"x,y\n1,2\n"
    if runner.kind == "container":  # served in place, read-only
        assert "could not scribble" in log and "Read-only file system" in log
        assert os.listdir(runner.run_dir(job) / "input" / "data" / "train") == []


# --- the container backend only ------------------------------------------------------

@pytest.mark.slow
def test_a_link_in_input_data_is_not_mounted_into_the_retry(
    container_runner: Runner, host: dict[str, Path],
) -> None:
    secrets = str(host["dir"])
    job = container_runner.submit(_hp(plant={"input/data/evil": secrets}, on=[1], fail_on=[1],
                                      report=[secrets]), retry={"maxAttempts": 2})
    status = job.wait(timeout=TIMEOUT)
    assert status.phase == Phase.COMPLETED and status.attempts == 2
    first, second = "\n".join(job.logs()).split("--- attempt 2")
    assert "planted input/data/evil" in first
    assert f"seen {secrets}: absent" in second


@pytest.mark.slow
def test_the_container_runs_unprivileged_by_default(container_runner: Runner) -> None:
    backend = get_backend("container")
    job = trainforge.submit({"metadata": {"generateName": "hostile-"},
                             "spec": {"image": container_runner.image}}, backend=backend)
    assert job.wait(timeout=TIMEOUT).phase == Phase.COMPLETED
    log = "\n".join(job.logs())
    uid, gid = (os.getuid(), os.getgid()) if os.getuid() != 0 else (65532, 65532)
    assert f"uid={uid} gid={gid} caps=0000000000000000 nnp=1" in log
    run_dir = container_runner.run_dir(job)
    assert (run_dir / "model" / "model.txt").stat().st_uid == uid
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o755 and run_dir.stat().st_uid == os.getuid()
    for folder in ("model", "output", "checkpoints"):
        assert stat.S_IMODE((run_dir / folder).stat().st_mode) == 0o700
    assert "could not plant" not in log


@pytest.mark.slow
def test_a_default_user_trainer_cannot_replace_the_folders_it_was_given(container_runner: Runner) -> None:
    if os.getuid() != 0:
        pytest.skip("as a non-root submitter the trainer runs as the run folder's owner")
    job = trainforge.submit({"metadata": {"generateName": "hostile-"}, "spec": {
        "image": container_runner.image,
        "hyperparameters": _hp(plant={"model": "/etc", "input/data/x": "/etc"})}},
        backend=get_backend("container"))
    assert job.wait(timeout=TIMEOUT).phase == Phase.COMPLETED
    log = "\n".join(job.logs())
    assert "could not plant model" in log and "could not plant input/data/x" in log


@pytest.mark.skipif(os.getuid() != 0, reason="giving files to another uid needs root")
def test_a_run_folder_is_handed_to_the_container_user_without_following_links(
    tmp_path: Path, host: dict[str, Path],
) -> None:
    from trainforge.backends.local.container import prepare_run_dir

    run = tmp_path / "run"
    (run / "checkpoints" / "sub").mkdir(parents=True)
    (run / "model").symlink_to(host["dir"])  # what a trainer running as root in its container could do
    (run / "output").symlink_to(host["empty"])
    (run / "checkpoints" / "sub" / "x").symlink_to(host["file"])
    (run / "input" / "data").mkdir(parents=True)
    (run / "input" / "data" / "train").symlink_to(host["dir"])
    before = [(p.stat().st_uid, p.stat().st_mode) for p in (host["dir"], host["file"], host["empty"])]
    prepare_run_dir(run, 65532, 65532, ["train"])
    assert [(p.stat().st_uid, p.stat().st_mode) for p in (host["dir"], host["file"], host["empty"])] == before
    assert stat.S_IMODE(run.stat().st_mode) == 0o755
    for rel in ("model", "output", "output/data", "checkpoints", "checkpoints/sub"):
        folder = run / rel
        assert not folder.is_symlink() and folder.stat().st_uid == 65532, rel
    assert (run / "checkpoints" / "sub" / "x").is_symlink()  # left alone, not chowned through
    assert os.listdir(run / "input" / "data" / "train") == [] and not (run / "input" / "data" / "train").is_symlink()


def test_container_user_option_values() -> None:
    from trainforge.backends.local.container import container_user
    from trainforge.errors import BackendError

    assert container_user(None, host=(0, 0)) == (65532, 65532)
    assert container_user(None, host=(1000, 100)) == (1000, 100)
    assert container_user("host", host=(0, 0)) == (0, 0)
    assert container_user("4242:4343", host=(0, 0)) == (4242, 4343)
    assert container_user("4242", host=(0, 0)) == (4242, 4242)
    assert container_user(None, host=(1000, 100), rootless=True) == (0, 0)  # the submitter, mapped
    with pytest.raises(BackendError, match="expected 'host', UID or UID:GID"):
        container_user("trainer")
    with pytest.raises(BackendError, match="expected 'host', UID or UID:GID"):
        get_backend("container", user="1:2:3")

