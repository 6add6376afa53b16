"""Per-job storage credentials, and the store the controller uses for a job.

Each job's stagers get short-lived credentials whose session policy allows
reading the job's input prefixes and reading and writing its own artifact tree
(``<output>/<namespace>/<job>/``) and checkpoint prefix, nothing else. They
are minted with STS AssumeRole (MinIO, or AWS STS) with the **namespace's
Secret** as the parent credentials, not the controller's: what a job gets is
then always the intersection of what its namespace already has and its own
prefixes, so a spec naming another tenant's bucket gains nothing, whatever it
says. The controller's credentials never mint anything.

They live in a Secret per job (``<job>-tf-storage``, owned by the TrainingJob,
so deleted with it) that the stagers mount as an AWS credentials file; while
the job runs the controller re-mints them once half their lifetime is gone,
and the kubelet swaps the mounted file (``s3client`` reads a replaced file).
Where the store has no STS, or the namespace has no Secret, pods get the
namespace's Secret as before, and the controller logs why.

The controller reads and writes a job's artifacts (archived logs, folded
metrics, final results) with the job's credentials too: its own only below
its default output root, a prefix the spec cannot choose.

Pure: ``job_scope``, ``job_policy``, ``secret_body``, ``needs_refresh``. I/O: ``JobCredentials``.
"""

from __future__ import annotations

import base64
import logging
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from kubernetes import client
from trainforge.artifacts import ArtifactURIs, within
from trainforge.config import S3Settings, Settings
from trainforge.errors import StorageError
from trainforge.spec import TrainingJob
from trainforge.storage import ObjectStore, open_store
from trainforge.storage.policy import session_policy
from trainforge.storage.sts import TemporaryCredentials, assume_role, session_name
from trainforge.uris import parse_uri

from .builder import (
    CREDENTIALS_ENV_KEYS,
    CREDENTIALS_EXPIRY_ANNOTATION,
    CREDENTIALS_FILE_KEY,
    credentials_secret_name,
    labels,
    owner_reference,
)
from .settings import ControllerSettings
from .wire import Wire, core_path

JSON_PATCH = "application/json-patch+json"
NO_STS_SECONDS = 300.0

log = logging.getLogger("trainforge.controller.credentials")

Mint = Callable[[S3Settings, dict[str, Any], int, str, str], TemporaryCredentials]


# -- pure ------------------------------------------------------------------------
@dataclass(frozen=True)
class Scope:
    read: tuple[str, ...]
    write: tuple[str, ...]


def job_scope(job: TrainingJob, default_output: str) -> Scope:
    """Inputs to read; the job's own artifact tree and checkpoints to write."""
    write = [str(ArtifactURIs.of(job, default_output).root)]
    if job.spec.checkpoints is not None:
        write.append(str(parse_uri(job.spec.checkpoints.uri).as_prefix()))
    return Scope(read=tuple(i.uri for i in job.spec.inputs), write=tuple(write))


def scopable(scope: Scope) -> bool:
    """Only s3:// prefixes can be scoped by a session policy."""
    return all(parse_uri(u).scheme == "s3" for u in scope.read + scope.write)


def job_policy(job: TrainingJob, default_output: str) -> dict[str, Any]:
    scope = job_scope(job, default_output)
    return session_policy(read=scope.read, write=scope.write)


def needs_refresh(expiration: datetime, now: datetime, duration_seconds: int) -> bool:
    """Less than half of the lifetime is left."""
    return expiration - now < timedelta(seconds=duration_seconds / 2)


def secret_body(job: TrainingJob, uid: str, creds: TemporaryCredentials,
                parent: S3Settings) -> dict[str, Any]:
    data = {CREDENTIALS_FILE_KEY: creds.credentials_file()}
    if parent.endpoint_url:
        data["AWS_ENDPOINT_URL"] = parent.endpoint_url
    if parent.region:
        data["AWS_DEFAULT_REGION"] = parent.region
    assert set(data) <= {CREDENTIALS_FILE_KEY, *CREDENTIALS_ENV_KEYS}
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": credentials_secret_name(job.name), "namespace": job.metadata.namespace,
                     "labels": labels(job), "ownerReferences": [owner_reference(job, uid)],
                     "annotations": {CREDENTIALS_EXPIRY_ANNOTATION: creds.expiration.isoformat()}},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def _decoded(secret: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in (secret.get("data") or {}).items()}


# -- I/O -------------------------------------------------------------------------
@dataclass
class _Known:
    uid: str
    creds: TemporaryCredentials | None  # None: this job runs on the namespace's Secret
    parent: S3Settings | None


class JobCredentials:
    """Mints, stores and refreshes each job's credentials; opens stores with them."""

    def __init__(self, api: client.ApiClient, settings: ControllerSettings,
                 own_store: Callable[[str], ObjectStore], clock: Callable[[], datetime],
                 mint: Mint | None = None):
        self.wire = Wire(api)
        self.settings = settings
        self.own_store = own_store
        self.clock = clock
        self.mint: Mint = mint or (lambda parent, policy, seconds, name, arn:
                                   assume_role(parent, policy, seconds, name, arn))
        self._known: dict[tuple[str, str], _Known] = {}
        self._no_sts: dict[str, float] = {}  # namespace -> monotonic time to ask again
        self._lock = threading.Lock()
        self._home = Path(tempfile.gettempdir()) / "trainforge-controller"

    # -- the namespace's Secret: the parent credentials ---------------------------
    def parent(self, namespace: str) -> S3Settings | None:
        try:
            secret = self.wire.request("GET", core_path(namespace, "secrets", self.settings.object_store_secret))
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        data = _decoded(secret)
        if not data.get("AWS_ACCESS_KEY_ID") or not data.get("AWS_SECRET_ACCESS_KEY"):
            return None
        endpoint = self.settings.object_store_endpoint or data.get("AWS_ENDPOINT_URL_S3") \
            or data.get("AWS_ENDPOINT_URL") or None
        return S3Settings(endpoint_url=endpoint,
                          region=data.get("AWS_DEFAULT_REGION") or data.get("AWS_REGION") or None,
                          access_key_id=data["AWS_ACCESS_KEY_ID"],
                          secret_access_key=data["AWS_SECRET_ACCESS_KEY"],
                          session_token=data.get("AWS_SESSION_TOKEN") or None)

    # -- minting ----------------------------------------------------------------
    def ensure(self, job: TrainingJob, uid: str) -> str | None:
        """Fresh credentials for a new attempt, in the job's Secret; its name,
        or None when pods must use the namespace's Secret (logged)."""
        ns, name = job.metadata.namespace, job.name
        why = self._try_mint(job, uid)
        if why is None:
            return credentials_secret_name(name)
        with self._lock:
            self._known[(ns, name)] = _Known(uid, None, None)
        log.warning("%s/%s: pods use the namespace's Secret %r, not per-job credentials: %s",
                    ns, name, self.settings.object_store_secret, why)
        return None

    def _try_mint(self, job: TrainingJob, uid: str) -> str | None:
        """``_mint_into_secret``; a controller whose role lacks the Secret verbs
        (an upgrade without its RBAC) falls back instead of stalling every job."""
        try:
            return self._mint_into_secret(job, uid)
        except client.ApiException as exc:
            if exc.status not in (401, 403):
                raise
            return f"the controller may not read or write Secrets in {job.metadata.namespace}: {exc.reason}"

    def _mint_into_secret(self, job: TrainingJob, uid: str) -> str | None:
        """None on success, else why not."""
        if self.settings.sts == "off":
            return "per-job credentials are off (TRAINFORGE_STS=off)"
        ns, name = job.metadata.namespace, job.name
        scope = job_scope(job, self.settings.default_output)
        if not scopable(scope):
            return "the job names a store other than s3://"
        parent = self.parent(ns)
        if parent is None:
            return f"no usable Secret {self.settings.object_store_secret!r} in namespace {ns}"
        with self._lock:
            if self._no_sts.get(ns, 0.0) > time.monotonic():
                return f"the store refused AssumeRole for this namespace less than {NO_STS_SECONDS:.0f}s ago"
        try:
            creds = self.mint(parent, session_policy(scope.read, scope.write),
                              self.settings.sts_duration_seconds, session_name("tf", ns, name),
                              self.settings.sts_role_arn)
        except StorageError as exc:
            if getattr(exc, "store_wide", True):  # no STS there: new jobs must not each wait to hear it again
                with self._lock:
                    self._no_sts[ns] = time.monotonic() + NO_STS_SECONDS
            return str(exc)
        body = secret_body(job, uid, creds, parent)
        try:
            self.wire.create(core_path(ns, "secrets"), body)
        except client.ApiException as exc:
            if exc.status != 409:
                raise
            # Replace only our own: the "test" fails (422) on a Secret this job does not own,
            # so the controller needs no GET on Secrets and never clobbers a user's.
            expiry = CREDENTIALS_EXPIRY_ANNOTATION.replace("~", "~0").replace("/", "~1")
            ops: Any = [{"op": "test", "path": "/metadata/ownerReferences/0/uid", "value": uid},
                        {"op": "replace", "path": "/data", "value": body["data"]},
                        {"op": "add", "path": f"/metadata/annotations/{expiry}",
                         "value": body["metadata"]["annotations"][CREDENTIALS_EXPIRY_ANNOTATION]}]
            try:
                self.wire.request("PATCH", core_path(ns, "secrets", credentials_secret_name(name)), ops,
                                  JSON_PATCH)
            except client.ApiException as patch_exc:
                if patch_exc.status not in (409, 422):
                    raise
                return f"a Secret {body['metadata']['name']!r} not owned by this job is in the way"
        with self._lock:
            self._known[(ns, name)] = _Known(uid, creds, parent)
        return None

    def refresh(self, job: TrainingJob, uid: str, pods_use_it: bool) -> None:
        """While the job runs on its own credentials (``pods_use_it``): re-mint
        once half their lifetime is gone, or at once after a restart of the
        controller, which does not know when they expire (and reads no Secret
        but the namespaces' parents)."""
        if not pods_use_it:
            return
        with self._lock:
            known = self._known.get((job.metadata.namespace, job.name))
        if known is not None and known.uid == uid and known.creds is not None and \
                not needs_refresh(known.creds.expiration, self.clock(), self.settings.sts_duration_seconds):
            return
        why = self._try_mint(job, uid)
        if why is not None:
            log.warning("%s/%s: cannot refresh its storage credentials: %s", job.metadata.namespace, job.name, why)

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._known.pop((namespace, name), None)

    # -- the controller's reads and writes of a job's artifacts -----------------
    def store(self, job: TrainingJob, uid: str, uri: str) -> ObjectStore | None:
        """The store to reach ``uri`` of ``job`` with: the job's own credentials
        while valid, else its namespace's; the controller's own only below its
        default output root. None: nothing may be done there."""
        if parse_uri(uri).scheme == "s3":
            s3 = self._tenant_settings(job, uid)
            if s3 is not None:
                return open_store(uri, Settings(home=self._home, s3=s3))
        if within(parse_uri(uri), parse_uri(self.settings.default_output)):
            return self.own_store(uri)
        return None

    def _tenant_settings(self, job: TrainingJob, uid: str) -> S3Settings | None:
        with self._lock:
            known = self._known.get((job.metadata.namespace, job.name))
        if known is not None and known.uid == uid and known.creds is not None and known.parent is not None \
                and known.creds.expiration > self.clock() + timedelta(seconds=60):
            return known.creds.settings(known.parent)
        try:
            return self.parent(job.metadata.namespace)
        except client.ApiException as exc:
            log.warning("%s/%s: cannot read the namespace's storage Secret: %s %s",
                        job.metadata.namespace, job.name, exc.status, exc.reason)
            return None
