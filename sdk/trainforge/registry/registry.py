"""The model registry over an object store: register, list, show, promote,
download. The rules and documents are in ``documents.py``; this module only
reads and writes them (conditional writes: ``storage.ConditionalWrites``)."""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..archives import extract_tar
from ..config import Settings, load_settings
from ..errors import (
    AliasConflict, IntegrityError, ModelNotFound, ModelRegistryError, ObjectNotFound, PreconditionFailed,
)
from ..spec import TrainingJob
from ..storage import ConditionalWrites, ObjectStore, open_store
from ..storage.base import ObjectInfo, as_uri
from . import documents as docs
from .documents import Layout, ModelRef, check_alias, check_model_name, check_namespace, check_version, parse_ref

DEFAULT_ROOT = "local://trainforge-registry/"
_CLAIM_TRIES = 1000
UNSET: Any = object()
"""``promote(expect=UNSET)``: move the alias whatever it points at now."""


def default_root(settings: Settings | None = None) -> str:
    """``TRAINFORGE_REGISTRY``, else ``registry:`` in the config, else the embedded store."""
    settings = settings if settings is not None else load_settings()
    return settings.registry or DEFAULT_ROOT


@dataclass(frozen=True)
class ModelVersion:
    """One registered version: its ``version.json`` as read."""

    document: dict[str, Any]
    uri: str  # of version.json

    @property
    def name(self) -> str:
        return str(self.document["name"])

    @property
    def version(self) -> int:
        return int(self.document["version"])

    @property
    def metrics(self) -> dict[str, float]:
        return dict(self.document["lineage"]["metrics"])

    @property
    def model_uri(self) -> str:
        return str(self.document["model"]["uri"])

    @property
    def job_name(self) -> str:
        return str(self.document["lineage"]["job"]["name"])


@dataclass(frozen=True)
class AliasState:
    """What an alias points at now (``version`` None: not set) and the ETag a
    compare-and-swap move needs."""

    name: str
    alias: str
    version: int | None
    etag: str | None
    document: dict[str, Any] | None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _actor(environ: Mapping[str, str]) -> str | None:
    for variable in ("GITHUB_ACTOR", "GITLAB_USER_LOGIN"):
        if environ.get(variable):
            return environ[variable]
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return None


def _json(data: Any) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


def _sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def data_manifest(job: TrainingJob, settings: Settings | None = None) -> dict[str, dict[str, Any]]:
    """Each input channel's keys and checksums (S3 ETags; an MD5 of each file in
    the embedded store, which keeps none), hashed per channel."""
    channels: dict[str, dict[str, Any]] = {}
    for channel in job.spec.inputs:
        store = open_store(channel.uri, settings)
        objects = store.list(channel.uri)
        checked = []
        for obj in objects:
            path = None if obj.etag else store.local_path(obj.uri)
            if path is not None:
                digest = hashlib.md5(usedforsecurity=False)
                with open(path, "rb") as handle:
                    for chunk in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(chunk)
                obj = ObjectInfo(obj.uri, obj.key, obj.size, digest.hexdigest())
            checked.append(obj)
        channels[channel.channel] = docs.channel_manifest(channel.uri, checked)
    return channels


def image_lineage(job: TrainingJob, backend: str) -> dict[str, Any]:
    """The image the job ran, with the digest where the engine knows it."""
    ref = job.spec.image
    if backend == "container":
        from ..images import inspect_digest

        return {"ref": ref, **inspect_digest(ref)}
    reasons = {"process": "the process backend runs a trainer source directory, not an image",
               "kubernetes": "the kubernetes backend does not record the pods' image IDs yet"}
    return {"ref": ref, "id": None, "digest": None,
            "reason": reasons.get(backend, f"the {backend} backend reports no image digest")}


class ModelRegistry:
    """Models in an object store under ``root`` (default: see ``default_root``)."""

    def __init__(self, root: str | None = None, *, namespace: str = "default", settings: Settings | None = None,
                 store: ObjectStore | None = None):
        self.settings = settings if settings is not None else load_settings()
        self.root = as_uri(root or default_root(self.settings)).as_prefix()
        self.namespace = check_namespace(namespace)
        self.store = store if store is not None else open_store(self.root, self.settings)
        if not isinstance(self.store, ConditionalWrites):
            raise ModelRegistryError(f"the store of {self.root} cannot write conditionally: "
                                     "it cannot hold a registry")

    def __repr__(self) -> str:
        return f"ModelRegistry({str(self.root)!r}, namespace={self.namespace!r})"

    def _layout(self, name: str) -> Layout:
        return Layout(self.root, self.namespace, check_model_name(name))

    @property
    def _cas(self) -> ConditionalWrites:
        assert isinstance(self.store, ConditionalWrites)
        return self.store

    # --- register ------------------------------------------------------------------
    def register(self, job: TrainingJob, name: str, *, backend: str, data: Mapping[str, Any] | None = None,
                 environ: Mapping[str, str] | None = None) -> ModelVersion:
        """A new immutable version of model ``name`` from the completed ``job``:
        its model copied into the registry with the job's lineage. ``data`` is the
        input manifest when the caller took it before the job ran (``retrain``);
        otherwise it is taken now. NotRegistrable unless the job completed."""
        layout = self._layout(name)
        source = docs.check_registrable(job)
        environ = os.environ if environ is None else environ
        self.store.ensure_bucket(self.root)
        manifest = dict(data) if data is not None else data_manifest(job, self.settings)
        image = image_lineage(job, backend)
        ci = docs.ci_from_env(environ)
        version = self._claim(layout, job)
        with tempfile.TemporaryDirectory(prefix="trainforge-register-") as tmp:
            archive = os.path.join(tmp, "model.tar.gz")
            open_store(source, self.settings).download_file(source, archive)
            model = {"uri": str(layout.model(version)), "source": source, "sha256": _sha256_file(archive),
                     "bytes": os.path.getsize(archive)}
            self.store.upload_file(archive, str(layout.model(version)))
        document = docs.version_document(
            name=name, namespace=self.namespace, version=version, job=job, backend=backend, image=image,
            data=manifest, model=model, ci=ci, registered_at=_now(), registered_by=_actor(environ))
        uri = layout.document(version)
        try:
            self._cas.create_only(uri, _json(document))
        except PreconditionFailed as exc:  # only a writer ignoring claims gets here
            raise ModelRegistryError(f"{uri} appeared while version {version} was being registered") from exc
        return ModelVersion(document, str(uri))

    def _claim(self, layout: Layout, job: TrainingJob) -> int:
        """The next free version number, taken create-only: concurrent
        registrations get distinct numbers."""
        listed = self.store.list(layout.versions_prefix)
        number = docs.next_number(docs.numbers_in(layout, listed, "claim.json")
                                  + docs.numbers_in(layout, listed, "version.json"))
        claim = _json({"job": job.name, "claimedAt": _now()})
        for _ in range(_CLAIM_TRIES):
            try:
                self._cas.create_only(layout.claim(number), claim)
                return number
            except PreconditionFailed:
                number += 1
        raise ModelRegistryError(f"could not take a version number for {layout.name} in {_CLAIM_TRIES} tries")

    # --- read ----------------------------------------------------------------------
    def versions(self, name: str) -> list[ModelVersion]:
        """Every registered version of ``name``, oldest first (none: ModelNotFound)."""
        layout = self._layout(name)
        numbers = docs.numbers_in(layout, self.store.list(layout.versions_prefix), "version.json")
        if not numbers:
            raise ModelNotFound(f"no model {name!r} in namespace {self.namespace} of {self.root}")
        return [self._read(layout, n) for n in numbers]

    def _read(self, layout: Layout, version: int) -> ModelVersion:
        uri = layout.document(version)
        try:
            data = self.store.read_bytes(uri)
        except ObjectNotFound:
            raise ModelNotFound(f"model {layout.name!r} has no version {version} in {self.root}") from None
        try:
            document = json.loads(data)
        except ValueError as exc:
            raise ModelRegistryError(f"{uri} is not a version document: {exc}") from None
        return ModelVersion(document, str(uri))

    def find_by_job(self, name: str, job: str, namespace: str) -> ModelVersion | None:
        """The version registered from ``namespace/job``, if any: a controller that
        registered and then died before its status write must not register twice."""
        layout = self._layout(name)
        for number in reversed(docs.numbers_in(layout, self.store.list(layout.versions_prefix), "version.json")):
            found = self._read(layout, number)
            source = found.document["lineage"]["job"]
            if source.get("name") == job and source.get("namespace") == namespace:
                return found
        return None

    def alias(self, name: str, alias: str) -> AliasState:
        """Where ``alias`` points now (version None: not set)."""
        uri = self._layout(name).alias(alias)
        try:
            data, etag = self._cas.read_with_etag(uri)
        except ObjectNotFound:
            return AliasState(name, alias, None, None, None)
        document = json.loads(data)
        return AliasState(name, alias, int(document["version"]), etag, document)

    def aliases(self, name: str) -> dict[str, int]:
        layout = self._layout(name)
        found = {}
        for obj in self.store.list(layout.aliases_prefix):
            leaf = obj.key.rsplit("/", 1)[-1]
            if leaf.endswith(".json"):
                state = self.alias(name, check_alias(leaf[:-5]))
                if state.version is not None:
                    found[state.alias] = state.version
        return found

    def get(self, ref: str | ModelRef) -> ModelVersion:
        """``name`` (the latest), ``name@3`` or ``name@production``."""
        ref = parse_ref(ref) if isinstance(ref, str) else ref
        layout = self._layout(ref.name)
        if ref.version is not None:
            return self._read(layout, ref.version)
        if ref.alias is not None:
            state = self.alias(ref.name, ref.alias)
            if state.version is None:
                self.versions(ref.name)  # ModelNotFound naming the model when it has no versions at all
                raise ModelNotFound(f"model {ref.name!r} has no alias {ref.alias!r}")
            return self._read(layout, state.version)
        numbers = docs.numbers_in(layout, self.store.list(layout.versions_prefix), "version.json")
        if not numbers:
            raise ModelNotFound(f"no model {ref.name!r} in namespace {self.namespace} of {self.root}")
        return self._read(layout, numbers[-1])

    # --- promote -------------------------------------------------------------------
    def promote(self, name: str, version: int, alias: str, *, expect: Any = UNSET,
                environ: Mapping[str, str] | None = None) -> AliasState:
        """Point ``alias`` at ``version`` with a compare-and-swap write. ``expect``
        (a version, or None for "not set") moves it only if it still points there:
        a pipeline that gated against the champion promotes only over that champion.
        A lost race raises AliasConflict; nothing is written then."""
        version = check_version(version)
        check_alias(alias)
        self._read(self._layout(name), version)  # the version must exist
        state = self.alias(name, alias)
        if expect is not UNSET and state.version != expect:
            raise AliasConflict(
                f"{name}@{alias} points at {state.version or 'nothing'}, not {expect or 'nothing'} as expected: "
                "another promotion came first")
        if state.version == version:
            return state
        environ = os.environ if environ is None else environ
        document = docs.alias_document(name=name, alias=alias, version=version, previous=state.document,
                                       moved_at=_now(), moved_by=_actor(environ), ci=docs.ci_from_env(environ))
        uri = self._layout(name).alias(alias)
        try:
            etag = (self._cas.create_only(uri, _json(document)) if state.etag is None
                    else self._cas.replace_if(uri, _json(document), state.etag))
        except PreconditionFailed as exc:
            raise AliasConflict(
                f"{name}@{alias} was moved by another promotion while this one (to version {version}) ran; "
                "nothing was changed: read it again and retry") from exc
        return AliasState(name, alias, version, etag, document)

    # --- download ------------------------------------------------------------------
    def download(self, ref: str | ModelRef, target: str | os.PathLike[str]) -> tuple[ModelVersion, Path]:
        """Unpack the version's model into ``target`` as untrusted input (nothing
        lands outside it) after checking its SHA-256 against the version."""
        found = self.get(ref)
        expected = str(self._layout(found.name).model(found.version))
        if found.model_uri != expected:  # a version's model is its own, never an object elsewhere
            raise IntegrityError(f"{found.uri} names its model at {found.model_uri}, not {expected}")
        with tempfile.TemporaryDirectory(prefix="trainforge-model-") as tmp:
            archive = os.path.join(tmp, "model.tar.gz")
            self.store.download_file(found.model_uri, archive)
            want = found.document["model"].get("sha256")
            got = _sha256_file(archive)
            if want and got != want:
                raise IntegrityError(f"{found.model_uri}: SHA-256 {got} differs from version "
                                     f"{found.version}'s record {want}")
            extract_tar(archive, target, source=found.model_uri)
        return found, Path(target)
