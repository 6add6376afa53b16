"""The model registry's documents and rules. Pure: no I/O.

Layout under a registry root (any storage URI)::

    <root>/<namespace>/<model>/versions/<n>/claim.json     the number, taken create-only
    <root>/<namespace>/<model>/versions/<n>/model.tar.gz   the model, copied from the job
    <root>/<namespace>/<model>/versions/<n>/version.json   the version (lineage); written last
    <root>/<namespace>/<model>/aliases/<alias>.json        alias -> version, moved compare-and-swap

A version exists once its ``version.json`` does, so a reader never sees one
without its model. A number is taken by creating ``claim.json`` with
``If-None-Match: *``: two registrations never get the same number; one that
died after its claim leaves a gap, never a broken version.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidModelRef, NotRegistrable
from ..spec import Phase, TrainingJob
from ..storage.base import ObjectInfo
from ..uris import StorageURI

SCHEMA = "trainforge.dev/model-version/v1"
ALIAS_SCHEMA = "trainforge.dev/model-alias/v1"
ALIAS_HISTORY = 20
"""An alias document keeps its last 20 moves (who, when, from which version)."""

_MODEL = re.compile(r"[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?")
_ALIAS = re.compile(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?")
_NAMESPACE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
MODEL_MEANING = "lowercase letters, digits, '-' and '_', starting and ending with a letter or digit, at most 63"
ALIAS_MEANING = "lowercase letters, digits and '-', starting with a letter, at most 63 (e.g. production)"


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:60] + f"... ({len(text)} characters)"


def check_model_name(name: object) -> str:
    """``name`` if it can be a model's name; InvalidModelRef otherwise, before
    it becomes part of any key (``../x`` never reaches a store)."""
    if not isinstance(name, str) or not _MODEL.fullmatch(name):
        raise InvalidModelRef(f"invalid model name {_shown(name)}: expected {MODEL_MEANING}")
    return name


def check_alias(alias: object) -> str:
    if not isinstance(alias, str) or not _ALIAS.fullmatch(alias):
        raise InvalidModelRef(f"invalid alias {_shown(alias)}: expected {ALIAS_MEANING}")
    return alias


def check_namespace(namespace: object) -> str:
    if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
        raise InvalidModelRef(f"invalid namespace {_shown(namespace)}: expected a DNS-1123 label")
    return namespace


def check_version(version: object) -> int:
    if isinstance(version, str) and version.isdigit() and len(version) <= 9:
        version = int(version)
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version < 10**9:
        raise InvalidModelRef(f"invalid version {_shown(version)}: expected a number from 1")
    return version


@dataclass(frozen=True)
class ModelRef:
    """``name``, ``name@3`` or ``name@production``: which version of a model.
    Neither version nor alias means the latest version."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        return self.name + (f"@{self.version}" if self.version else f"@{self.alias}" if self.alias else "")


def parse_ref(text: object) -> ModelRef:
    if not isinstance(text, str):
        raise InvalidModelRef(f"invalid model reference {_shown(text)}: expected NAME, NAME@VERSION or NAME@ALIAS")
    name, sep, which = text.partition("@")
    check_model_name(name)
    if not sep:
        return ModelRef(name)
    if which.isdigit():
        return ModelRef(name, version=check_version(which))
    return ModelRef(name, alias=check_alias(which))


@dataclass(frozen=True)
class Layout:
    """Where one model's objects live under the registry root."""

    root: StorageURI
    namespace: str
    name: str

    @property
    def model_prefix(self) -> StorageURI:
        return self.root.as_prefix().join(check_namespace(self.namespace), check_model_name(self.name)).as_prefix()

    @property
    def versions_prefix(self) -> StorageURI:
        return self.model_prefix.join("versions").as_prefix()

    @property
    def aliases_prefix(self) -> StorageURI:
        return self.model_prefix.join("aliases").as_prefix()

    def version_dir(self, version: int) -> StorageURI:
        return self.versions_prefix.join(str(check_version(version))).as_prefix()

    def claim(self, version: int) -> StorageURI:
        return self.version_dir(version).join("claim.json")

    def document(self, version: int) -> StorageURI:
        return self.version_dir(version).join("version.json")

    def model(self, version: int) -> StorageURI:
        return self.version_dir(version).join("model.tar.gz")

    def alias(self, alias: str) -> StorageURI:
        return self.aliases_prefix.join(f"{check_alias(alias)}.json")


def numbers_in(layout: Layout, objects: Iterable[ObjectInfo], marker: str) -> list[int]:
    """The version numbers under ``versions/`` that hold ``marker`` (claim.json or
    version.json), sorted; keys that are not ours are ignored."""
    base = layout.versions_prefix.key
    found = set()
    for obj in objects:
        rest = obj.key[len(base):] if obj.key.startswith(base) else ""
        number, _, leaf = rest.partition("/")
        if leaf == marker and number.isdigit() and not number.startswith("0"):
            found.add(int(number))
    return sorted(found)


def next_number(taken: Iterable[int]) -> int:
    return max(taken, default=0) + 1


# --- lineage -------------------------------------------------------------------

def ci_from_env(environ: Mapping[str, str]) -> dict[str, str] | None:
    """The CI commit and run URL from GitHub Actions' or GitLab CI's variables."""
    if environ.get("GITHUB_SHA"):
        server, repo, run = (environ.get(k, "") for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"))
        ci = {"system": "github-actions", "commit": environ["GITHUB_SHA"]}
        if server and repo and run:
            ci["runUrl"] = f"{server.rstrip('/')}/{repo}/actions/runs/{run}"
        if environ.get("GITHUB_REF_NAME"):
            ci["ref"] = environ["GITHUB_REF_NAME"]
        return ci
    if environ.get("CI_COMMIT_SHA"):
        ci = {"system": "gitlab-ci", "commit": environ["CI_COMMIT_SHA"]}
        if environ.get("CI_PIPELINE_URL"):
            ci["runUrl"] = environ["CI_PIPELINE_URL"]
        if environ.get("CI_COMMIT_REF_NAME"):
            ci["ref"] = environ["CI_COMMIT_REF_NAME"]
        return ci
    return None


def channel_manifest(uri: str, objects: Iterable[ObjectInfo]) -> dict[str, Any]:
    """One channel's data as a comparable fingerprint: object count, bytes and the
    SHA-256 over every ``key, size, checksum`` line in key order. Two manifests
    with one digest saw the same keys with the same contents."""
    rows = sorted((o.key, o.size, o.etag or "") for o in objects)
    digest = hashlib.sha256()
    for key, size, etag in rows:
        digest.update(f"{key}\t{size}\t{etag}\n".encode())
    return {"uri": uri, "objects": len(rows), "bytes": sum(r[1] for r in rows), "sha256": digest.hexdigest()}


def manifest_digest(channels: Mapping[str, Mapping[str, Any]]) -> str:
    """One digest over every channel's (the data trigger compares these)."""
    digest = hashlib.sha256()
    for name in sorted(channels):
        digest.update(f"{name}\t{channels[name]['sha256']}\n".encode())
    return digest.hexdigest()


def check_registrable(job: TrainingJob) -> str:
    """The job's model URI; NotRegistrable unless the job completed with one."""
    status = job.status
    phase = status.phase if status is not None else Phase.PENDING
    if phase != Phase.COMPLETED:
        reason = f" ({status.failure_reason})" if status is not None and status.failure_reason else ""
        raise NotRegistrable(f"job {job.name} is {phase.value}{reason}: only a Completed job can be registered")
    assert status is not None
    if not status.artifacts.model:
        raise NotRegistrable(f"job {job.name} completed without a model artifact: nothing to register")
    return status.artifacts.model


def version_document(*, name: str, namespace: str, version: int, job: TrainingJob, backend: str,
                     image: Mapping[str, Any], data: Mapping[str, Mapping[str, Any]],
                     model: Mapping[str, Any], ci: Mapping[str, str] | None, registered_at: str,
                     registered_by: str | None = None) -> dict[str, Any]:
    """The immutable ``version.json``: the model and everything it came from."""
    status = job.status
    assert status is not None
    return {
        "schema": SCHEMA, "name": name, "namespace": namespace, "version": version,
        "registeredAt": registered_at, "registeredBy": registered_by,
        "model": dict(model),
        "lineage": {
            "job": {"name": job.name, "namespace": job.metadata.namespace, "backend": backend,
                    "startTime": status.start_time, "endTime": status.end_time, "attempts": status.attempts},
            "image": dict(image),
            "data": {"channels": {k: dict(v) for k, v in data.items()}, "sha256": manifest_digest(data)},
            "hyperparameters": dict(job.spec.hyperparameters),
            "metrics": dict(status.final_metrics),
            "ci": dict(ci) if ci else None,
        },
    }


def alias_document(*, name: str, alias: str, version: int, previous: Mapping[str, Any] | None,
                   moved_at: str, moved_by: str | None, ci: Mapping[str, str] | None) -> dict[str, Any]:
    """The alias after a move: its target and the last moves, newest first."""
    entry = {"version": version, "movedAt": moved_at, "movedBy": moved_by,
             "from": previous.get("version") if previous else None,
             "ci": dict(ci) if ci else None}
    history = [entry, *((previous or {}).get("history") or [])][:ALIAS_HISTORY]
    return {"schema": ALIAS_SCHEMA, "name": name, "alias": alias, "version": version, "history": history}
