"""Staging between the object store and a job's /opt/ml tree, on the embedded
local store (a folder under TRAINFORGE_HOME): artifact URIs, channels,
checkpoints, the model archive."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import pytest
from trainforge.contract import HostInfo, Layout
from trainforge.errors import ObjectNotFound
from trainforge.spec import TrainingJob, parse_job
from trainforge.staging import (
    ArtifactURIs,
    channel_uri,
    download_model,
    fastfile_folders,
    restore_checkpoints,
    stage_in,
    stage_out_model,
    sync_checkpoints,
    write_config_files,
)
from trainforge.storage import open_store

ONE_HOST = HostInfo("algo-1", ("algo-1",))


@pytest.mark.parametrize("output", ["s3://models/mnist", "s3://models/mnist/"])
def test_artifact_uris(output: str) -> None:
    uris = ArtifactURIs.for_job(output, "team-a", "job-1")
    assert str(uris.root) == "s3://models/mnist/team-a/job-1/"
    assert uris.model == "s3://models/mnist/team-a/job-1/output/model.tar.gz"
    assert uris.output == "s3://models/mnist/team-a/job-1/output/output.tar.gz"
    assert uris.metrics == "s3://models/mnist/team-a/job-1/metrics/metrics.jsonl"
    assert uris.logs == "s3://models/mnist/team-a/job-1/logs/"
    assert uris.log("algo-1", 2) == "s3://models/mnist/team-a/job-1/logs/algo-1-attempt-2.log"


def test_artifact_uris_at_a_bucket_root() -> None:
    assert ArtifactURIs.for_job("local://trainforge-artifacts", "default", "j").model == \
        "local://trainforge-artifacts/default/j/output/model.tar.gz"


def test_channel_uri() -> None:
    assert str(channel_uri("local://trainforge-data/", "default", "job-1", "train")) == \
        "local://trainforge-data/default/job-1/train/"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TRAINFORGE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def put(uri: str, files: dict[str, str]) -> None:
    store = open_store(uri)
    store.ensure_bucket(uri)
    for name, text in files.items():
        store.write_bytes(uri.rstrip("/") + "/" + name, text.encode())


def job_with(inputs: list[dict[str, str]], **spec: object) -> TrainingJob:
    return parse_job({"metadata": {"name": "job-1"}, "spec": {"image": "x", "inputs": inputs, **spec}})


def test_write_config_files(home: Path, tmp_path: Path) -> None:
    layout = Layout(str(tmp_path / "run"))
    job = job_with([{"channel": "train", "uri": "local://data/train/"}], hyperparameters={"lr": 0.1})
    write_config_files(job, layout, ONE_HOST)
    assert all(os.path.isdir(d) for d in layout.directories())
    assert json.loads(Path(layout.hyperparameters_file).read_text()) == {"lr": "0.1"}
    assert json.loads(Path(layout.resource_config_file).read_text())["hosts"] == ["algo-1"]
    assert list(json.loads(Path(layout.input_data_config_file).read_text())) == ["train"]


def test_stage_in_copies_every_channel(home: Path, tmp_path: Path) -> None:
    put("local://data/train/", {"a.csv": "1", "sub/b.csv": "2"})
    put("local://data/val/", {"c.csv": "3"})
    layout = Layout(str(tmp_path / "run"))
    job = job_with([{"channel": "train", "uri": "local://data/train/"},
                    {"channel": "validation", "uri": "local://data/val"}])
    stage_in(job, layout, ONE_HOST)
    train = Path(layout.channel_dir("train"))
    assert sorted(str(p.relative_to(train)) for p in train.rglob("*") if p.is_file()) == ["a.csv", "sub/b.csv"]
    assert (Path(layout.channel_dir("validation")) / "c.csv").read_text() == "3"
    assert not train.is_symlink()


def test_stage_in_shards_by_key(home: Path, tmp_path: Path) -> None:
    put("local://data/shards/", {f"part-{i}.csv": str(i) for i in range(5)})
    job = job_with([{"channel": "train", "uri": "local://data/shards/", "distribution": "ShardedByS3Key"}])
    hosts = ("algo-1", "algo-2")
    seen = []
    for host in hosts:
        layout = Layout(str(tmp_path / host))
        stage_in(job, layout, HostInfo(host, hosts))
        seen.append(sorted(os.listdir(layout.channel_dir("train"))))
    assert seen == [["part-0.csv", "part-2.csv", "part-4.csv"], ["part-1.csv", "part-3.csv"]]


def test_stage_in_fast_file_copies_local_data_so_the_trainer_cannot_change_it(home: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "x.csv").write_text("1")
    layout = Layout(str(tmp_path / "run"))
    stage_in(job_with([{"channel": "train", "uri": f"file://{data}", "mode": "FastFile"}]), layout, ONE_HOST)
    copy = Path(layout.channel_dir("train")) / "x.csv"
    assert not Path(layout.channel_dir("train")).is_symlink() and copy.read_text() == "1"
    assert copy.stat().st_ino != (data / "x.csv").stat().st_ino  # not a hard link either
    copy.write_text("changed by the trainer")
    assert (data / "x.csv").read_text() == "1"


def test_stage_in_leaves_an_empty_mount_point_for_channels_served_in_place(home: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "x.csv").write_text("1")
    job = job_with([{"channel": "train", "uri": f"file://{data}", "mode": "FastFile"},
                    {"channel": "test", "uri": f"file://{data}"}])
    assert fastfile_folders(job) == {"train": str(data.resolve())}
    layout = Layout(str(tmp_path / "run"))
    stage_in(job, layout, ONE_HOST, in_place={"train"})
    assert os.listdir(layout.channel_dir("train")) == [] and not Path(layout.channel_dir("train")).is_symlink()
    assert os.listdir(layout.channel_dir("test")) == ["x.csv"]


def test_missing_channel_data_names_the_channel_and_uri(home: Path, tmp_path: Path) -> None:
    put("local://data/train/", {"a.csv": "1"})
    job = job_with([{"channel": "train", "uri": "local://data/train/"},
                    {"channel": "validation", "uri": "local://data/nothing-here/"}])
    with pytest.raises(ObjectNotFound, match=r"input channel 'validation': .*local://data/nothing-here/"):
        stage_in(job, Layout(str(tmp_path / "run")), ONE_HOST)


def test_checkpoints_sync_and_restore(home: Path, tmp_path: Path) -> None:
    job = job_with([], checkpoints={"uri": "local://ckpt/job-1/"})
    first, second = Layout(str(tmp_path / "a")), Layout(str(tmp_path / "b"))
    assert restore_checkpoints(job, first) == 0  # nothing saved yet
    assert sync_checkpoints(job, first) == 0  # no folder yet
    os.makedirs(first.checkpoint_dir, exist_ok=True)  # restore made it
    Path(first.checkpoint_dir, "epoch-0001.pt").write_bytes(b"weights")
    assert sync_checkpoints(job, first) == 1
    assert restore_checkpoints(job, second) == 1
    assert Path(second.checkpoint_dir, "epoch-0001.pt").read_bytes() == b"weights"


def test_no_checkpoint_uri_means_no_sync(home: Path, tmp_path: Path) -> None:
    layout = Layout(str(tmp_path / "run"))
    os.makedirs(layout.checkpoint_dir)
    Path(layout.checkpoint_dir, "x").write_text("1")
    assert sync_checkpoints(job_with([]), layout) == 0 and restore_checkpoints(job_with([]), layout) == 0


def test_stage_out_model_and_download(home: Path, tmp_path: Path) -> None:
    layout = Layout(str(tmp_path / "run"))
    os.makedirs(layout.model_dir)
    os.makedirs(layout.output_data_dir)
    Path(layout.model_dir, "model.pt").write_bytes(b"model")
    Path(layout.output_data_dir, "report.csv").write_text("a,b\n")
    artifacts = ArtifactURIs.for_job("local://models/", "default", "job-1")
    model, output = stage_out_model(layout, artifacts)
    assert (model, output) == (artifacts.model, artifacts.output)
    target = download_model(model, tmp_path / "fetched")
    assert (target / "model.pt").read_bytes() == b"model"
    path = open_store(output).local_path(output)
    assert path is not None
    with tarfile.open(path) as tar:
        assert tar.getnames() == ["report.csv"]


def test_empty_model_is_still_an_archive_and_empty_output_is_none(home: Path, tmp_path: Path) -> None:
    layout = Layout(str(tmp_path / "run"))
    model, output = stage_out_model(layout, ArtifactURIs.for_job("local://models/", "default", "job-2"))
    assert model is not None and output is None
    assert list((download_model(model, tmp_path / "m")).iterdir()) == []
