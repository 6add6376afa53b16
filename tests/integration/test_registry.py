"""The model registry on the real MinIO and on the embedded store: versions,
lineage, aliases moved by conditional writes under contention, downloads, and
the requests it refuses. The jobs here are documents (a Completed TrainingJob
whose model archive really is in the store); tests/integration/test_ci_examples.py
registers a model trained for real."""

from __future__ import annotations

import io
import json
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from trainforge.config import load_settings
from trainforge.errors import (
    AliasConflict, IntegrityError, InvalidModelRef, ModelNotFound, NotRegistrable, PreconditionFailed,
)
from trainforge.registry import ModelRegistry
from trainforge.spec import TrainingJob
from trainforge.storage import ConditionalWrites, open_store

from tests.integration.test_process_backend_s3 import use_s3

CI_ENV = {"GITHUB_SHA": "0123456789abcdef", "GITHUB_SERVER_URL": "https://github.example",
          "GITHUB_REPOSITORY": "team/digits", "GITHUB_RUN_ID": "42", "GITHUB_ACTOR": "ci-bot"}


@dataclass
class Place:
    """Where a test keeps its data, artifacts and registry: one bucket."""

    kind: str
    bucket: str  # a URI prefix: s3://<bucket>/ or local://<bucket>/

    def uri(self, key: str) -> str:
        return self.bucket + key


@pytest.fixture(params=["minio", "local"])
def place(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Place]:
    for variable in ("TRAINFORGE_REGISTRY", "TRAINFORGE_CONFIG", "GITHUB_SHA", "CI_COMMIT_SHA"):
        monkeypatch.delenv(variable, raising=False)
    if request.param == "minio":
        bucket = request.getfixturevalue("minio_bucket")
        use_s3(monkeypatch, tmp_path / "home", bucket.endpoint, bucket.access_key, bucket.secret_key,
               bucket.region)
        yield Place("minio", f"s3://{bucket.name}/")
    else:
        monkeypatch.setenv("TRAINFORGE_HOME", str(tmp_path / "home"))
        yield Place("local", "local://registry-test/")


def model_archive(text: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        data = text.encode()
        info = tarfile.TarInfo("model.pt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def completed_job(place: Place, name: str, accuracy: float, phase: str = "Completed") -> TrainingJob:
    """A job document as a backend reports it, with its model archive and one
    input channel really in the store."""
    store = open_store(place.bucket)
    store.ensure_bucket(place.bucket)
    model = place.uri(f"artifacts/default/{name}/output/model.tar.gz")
    store.write_bytes(model, model_archive(f"weights of {name}"))
    for key in ("a.csv", "b.csv"):
        if not store.exists(place.uri(f"data/train/{key}")):
            store.write_bytes(place.uri(f"data/train/{key}"), f"{key} rows".encode())
    return TrainingJob.model_validate({
        "metadata": {"name": name},
        "spec": {"image": "/src/digits", "hyperparameters": {"lr": "0.05", "epochs": "3"},
                 "inputs": [{"channel": "train", "uri": place.uri("data/train/")}]},
        "status": {"phase": phase, "finalMetrics": {"validation:accuracy": accuracy},
                   "failureReason": "boom" if phase == "Failed" else None,
                   "artifacts": {"model": model if phase == "Completed" else None},
                   "startTime": "2026-01-01T00:00:00Z", "endTime": "2026-01-01T00:01:00Z"},
    })


def registry(place: Place) -> ModelRegistry:
    return ModelRegistry(place.uri("registry/"))


def test_register_list_show_promote_download(place: Place, tmp_path: Path) -> None:
    reg = registry(place)
    first = reg.register(completed_job(place, "digits-a", 0.91), "digits", backend="process", environ=CI_ENV)
    second = reg.register(completed_job(place, "digits-b", 0.95), "digits", backend="process", environ={})
    assert (first.version, second.version) == (1, 2)

    lineage = first.document["lineage"]
    assert lineage["job"] == {"name": "digits-a", "namespace": "default", "backend": "process",
                              "startTime": "2026-01-01T00:00:00Z", "endTime": "2026-01-01T00:01:00Z",
                              "attempts": 0}
    assert lineage["image"]["ref"] == "/src/digits" and lineage["image"]["digest"] is None
    assert "process backend" in lineage["image"]["reason"]
    assert lineage["hyperparameters"] == {"lr": "0.05", "epochs": "3"}
    assert lineage["metrics"] == {"validation:accuracy": 0.91}
    assert lineage["ci"] == {"system": "github-actions", "commit": "0123456789abcdef",
                             "runUrl": "https://github.example/team/digits/actions/runs/42"}
    assert first.document["registeredBy"] == "ci-bot"
    train = lineage["data"]["channels"]["train"]
    assert (train["objects"], train["bytes"]) == (2, len("a.csv rows") + len("b.csv rows"))
    assert second.document["lineage"]["ci"] is None
    # The same data gives the same fingerprint; changed data a different one.
    assert second.document["lineage"]["data"]["sha256"] == lineage["data"]["sha256"]
    open_store(place.bucket).write_bytes(place.uri("data/train/b.csv"), b"b.csv ROWS")
    third = reg.register(completed_job(place, "digits-c", 0.5), "digits", backend="process")
    assert third.document["lineage"]["data"]["sha256"] != lineage["data"]["sha256"]

    # The model was copied: the job's own artifact may go, the version keeps it.
    assert first.model_uri == place.uri("registry/default/digits/versions/1/model.tar.gz")
    open_store(place.bucket).delete_prefix(place.uri("artifacts/"))

    assert [v.version for v in reg.versions("digits")] == [1, 2, 3]
    assert reg.get("digits").version == 3
    assert reg.get("digits@1").job_name == "digits-a"

    reg.promote("digits", 1, "production")
    moved = reg.promote("digits", 2, "production")
    reg.promote("digits", 3, "candidate")
    assert reg.aliases("digits") == {"production": 2, "candidate": 3}
    assert reg.get("digits@production").version == 2
    assert [(h["version"], h["from"]) for h in moved.document["history"]] == [(2, 1), (1, None)]

    found, target = reg.download("digits@production", tmp_path / "model")
    assert found.version == 2
    assert (target / "model.pt").read_text() == "weights of digits-b"


def test_conditional_writes_have_one_winner(place: Place) -> None:
    """The storage capability itself: N writers holding one ETag, one wins."""
    store = open_store(place.bucket)
    store.ensure_bucket(place.bucket)
    assert isinstance(store, ConditionalWrites)
    uri = place.uri("cas/doc.json")
    store.create_only(uri, b"v0")
    with pytest.raises(PreconditionFailed, match="already there"):
        store.create_only(uri, b"again")
    for round_ in range(3):
        _, etag = store.read_with_etag(uri)
        barrier = threading.Barrier(6)
        outcome: list[str] = []

        def write(i: int, etag: str = etag) -> None:
            barrier.wait()
            try:
                store.replace_if(uri, f"round {round_} by {i}".encode(), etag)
                outcome.append(f"won {i}")
            except PreconditionFailed:
                outcome.append("lost")

        threads = [threading.Thread(target=write, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [o for o in outcome if o.startswith("won")]
        assert len(winners) == 1 and outcome.count("lost") == 5
        assert store.read_bytes(uri).decode() == f"round {round_} by {winners[0].split()[1]}"
    with pytest.raises(PreconditionFailed):
        store.replace_if(place.uri("cas/missing.json"), b"x", "0" * 32)


def test_concurrent_promotions_exactly_one_wins_each_round(place: Place) -> None:
    reg = registry(place)
    for i in range(4):
        reg.register(completed_job(place, f"digits-{i}", 0.9), "digits", backend="process")
    previous = None
    winners = []
    for _ in range(4):
        results: dict[int, Any] = {}

        def promote(version: int, expect: Any = previous) -> None:
            barrier.wait()
            try:
                results[version] = reg.promote("digits", version, "production", expect=expect)
            except AliasConflict as exc:
                results[version] = exc

        versions = [v for v in (1, 2, 3, 4) if v != previous]  # a no-op move would not race
        barrier = threading.Barrier(len(versions))
        threads = [threading.Thread(target=promote, args=(v,)) for v in versions]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        won = [v for v, r in results.items() if not isinstance(r, Exception)]
        assert len(won) == 1, results
        for version, result in results.items():
            if version != won[0]:
                assert isinstance(result, AliasConflict) and "another promotion" in str(result)
        winners.append(won[0])
        previous = won[0]
    history = reg.alias("digits", "production").document["history"]
    # no lost update: every winner is in the history, each move from the one before
    assert [h["version"] for h in reversed(history)] == winners
    assert [h["from"] for h in reversed(history)] == [None, *winners[:-1]]


def test_concurrent_registrations_get_distinct_versions(place: Place) -> None:
    reg = registry(place)
    jobs = [completed_job(place, f"digits-{i}", 0.9) for i in range(5)]
    versions: list[int] = []
    barrier = threading.Barrier(len(jobs))

    def register(job: TrainingJob) -> None:
        barrier.wait()
        versions.append(reg.register(job, "digits", backend="process").version)

    threads = [threading.Thread(target=register, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(versions) == [1, 2, 3, 4, 5]
    assert sorted(v.job_name for v in reg.versions("digits")) == [f"digits-{i}" for i in range(5)]


def test_refused_requests_say_why_and_write_nothing(place: Place) -> None:
    reg = registry(place)
    with pytest.raises(NotRegistrable, match="digits-f is Failed \\(boom\\): only a Completed job"):
        reg.register(completed_job(place, "digits-f", 0.99, phase="Failed"), "digits", backend="process")
    with pytest.raises(NotRegistrable, match="digits-r is Training"):
        reg.register(completed_job(place, "digits-r", 0.99, phase="Training"), "digits", backend="process")
    good = completed_job(place, "digits-ok", 0.9)
    for bad in ("../x", "a/b", "Digits", "", "x" * 64, "..", "a@1", "a\x1b[2J"):
        with pytest.raises(InvalidModelRef, match="invalid model name"):
            reg.register(good, bad, backend="process")
    assert open_store(place.bucket).list(place.uri("registry/")) == []

    with pytest.raises(ModelNotFound, match="no model 'digits'"):
        reg.get("digits@production")
    reg.register(good, "digits", backend="process")
    with pytest.raises(ModelNotFound, match="no alias 'production'"):
        reg.get("digits@production")
    with pytest.raises(ModelNotFound, match="no version 7"):
        reg.promote("digits", 7, "production")
    for bad_alias in ("7", "../production", "Prod", "a/b"):
        with pytest.raises(InvalidModelRef):
            reg.promote("digits", 1, bad_alias)
    with pytest.raises(AliasConflict, match="points at nothing, not 3"):
        reg.promote("digits", 1, "production", expect=3)
    assert open_store(place.bucket).list(place.uri("registry/default/digits/aliases/")) == []


def test_download_refuses_a_tampered_version(place: Place, tmp_path: Path) -> None:
    reg = registry(place)
    version = reg.register(completed_job(place, "digits-t", 0.9), "digits", backend="process")
    store = open_store(place.bucket)
    store.write_bytes(version.model_uri, model_archive("swapped weights"))
    with pytest.raises(IntegrityError, match="SHA-256 .* differs from version 1's record"):
        reg.download("digits@1", tmp_path / "a")
    elsewhere = place.uri("elsewhere/model.tar.gz")
    store.write_bytes(elsewhere, model_archive("other"))
    document = json.loads(store.read_bytes(version.uri))
    document["model"]["uri"] = elsewhere
    store.write_bytes(version.uri, json.dumps(document).encode())
    with pytest.raises(IntegrityError, match="names its model at .*elsewhere"):
        reg.download("digits@1", tmp_path / "b")
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())


def test_store_without_a_registry_setting_uses_the_embedded_default(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAINFORGE_HOME", str(tmp_path))
    monkeypatch.delenv("TRAINFORGE_REGISTRY", raising=False)
    monkeypatch.delenv("TRAINFORGE_CONFIG", raising=False)
    assert str(ModelRegistry().root) == "local://trainforge-registry/"
    monkeypatch.setenv("TRAINFORGE_REGISTRY", "s3://models/registry")
    assert load_settings().registry == "s3://models/registry"


def test_container_jobs_record_the_image_id_from_the_engine(container_engine: Any, monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path: Path) -> None:
    """The container backend's lineage: image inspect on the engine (its ID, and
    the repo digest where it has one: Podman keeps one even for a local image);
    a tag the engine does not have is null with the reason."""
    from trainforge.registry.registry import image_lineage

    monkeypatch.setenv("DOCKER_HOST", container_engine.docker_host)
    job = TrainingJob.model_validate({"metadata": {"name": "c"}, "spec": {"image": container_engine.base_image}})
    found = image_lineage(job, "container")
    client = container_engine.docker_client()
    try:
        attrs = client.images.get(container_engine.base_image).attrs
    finally:
        client.close()
    assert found["ref"] == container_engine.base_image and found["id"] == attrs["Id"]
    assert found["id"].startswith("sha256:")
    if attrs.get("RepoDigests"):
        assert found["digest"] == attrs["RepoDigests"][0] and "@sha256:" in found["digest"]
        assert found["reason"] is None
    else:
        assert found["digest"] is None and "never pushed to or pulled from a registry" in found["reason"]
    gone = image_lineage(job.model_copy(update={"spec": job.spec.model_copy(update={"image": "localhost/none:x"})}),
                         "container")
    assert gone["id"] is None and "no longer on the container engine" in gone["reason"]
