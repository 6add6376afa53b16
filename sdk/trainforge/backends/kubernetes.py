"""The Kubernetes backend: a TrainingJob custom resource per job; the
controller (``controller/``) does the rest. The only SDK module that imports
``kubernetes``; API errors are mapped to trainforge's errors here.

Options: ``namespace`` (default: the kubeconfig context's, else ``default``),
``context``, ``kubeconfig``, ``output`` (default artifact root) and
``data_root`` (where local data given to submit_job is uploaded).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

from ..artifacts import tenancy_issues
from ..config import Settings
from ..errors import BackendError, JobExists, JobNotFound, SpecError, SpecIssue, TrainforgeError
from ..metrics import MetricRecord, read_stored_records
from ..spec import TrainingJob, check_job_name
from ..staging import ArtifactURIs
from ..storage import open_store

from ..names import ATTEMPT_LABEL, GROUP, JOB_NAME_LABEL, STOP_ANNOTATION, VERSION
from ..names import TRAINING_PLURAL as PLURAL


def api_error(exc: Any, noun: str, where: str, doing: str) -> TrainforgeError:
    """An ApiException about ``noun`` ``where`` (namespace/name) as the package's error."""
    if exc.status == 404:
        return JobNotFound(f"{noun} {where} not found")
    if exc.status == 422:
        return SpecError([SpecIssue("spec", _api_message(exc))], source=where)
    if exc.status == 409:
        return JobExists(f"{noun} {where} already exists")
    return BackendError(f"{doing} {where}: {exc.status} {exc.reason}: {_api_message(exc)}")


class KubernetesBackend:
    name = "kubernetes"

    def __init__(self, settings: Settings, namespace: str | None = None, context: str | None = None,
                 kubeconfig: str | None = None, output: str | None = None,
                 data_root: str | None = None, api_client: Any = None):
        from kubernetes import client, config

        self.settings = settings
        self._output = output or os.environ.get("TRAINFORGE_K8S_OUTPUT", "s3://trainforge/jobs/")
        self._data_root = data_root or os.environ.get("TRAINFORGE_K8S_DATA_ROOT", "s3://trainforge/data/")
        if api_client is None:
            # Read now: the client reads $KUBECONFIG once, when it is first imported.
            kubeconfig = kubeconfig or os.environ.get("KUBECONFIG") or None
            try:
                api_client = config.new_client_from_config(config_file=kubeconfig, context=context)
                if namespace is None:
                    _, active = config.list_kube_config_contexts(config_file=kubeconfig)
                    if context:
                        contexts, _ = config.list_kube_config_contexts(config_file=kubeconfig)
                        active = next((c for c in contexts if c["name"] == context), active)
                    namespace = (active or {}).get("context", {}).get("namespace")
            except config.ConfigException as exc:
                if kubeconfig or not os.environ.get("KUBERNETES_SERVICE_HOST"):
                    raise BackendError(f"kubernetes backend: cannot load kubeconfig: {exc}") from exc
                # In a pod (the chart's dashboard): its service account, its namespace.
                try:
                    config.load_incluster_config()
                except config.ConfigException as incluster:
                    raise BackendError(f"kubernetes backend: no kubeconfig ({exc}) and no in-cluster "
                                       f"service account ({incluster})") from incluster
                api_client = client.ApiClient()
                namespace = namespace or os.environ.get("POD_NAMESPACE")
        self.namespace = namespace or "default"
        self._client = client
        self.api = api_client
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)

    # -- errors at the boundary ----------------------------------------------
    def _error(self, exc: Any, name: str, doing: str) -> TrainforgeError:
        return api_error(exc, "training job", f"{self.namespace}/{name}", doing)

    # -- the protocol ----------------------------------------------------------
    def validate(self, job: TrainingJob) -> None:
        """JobExists if the name is taken, before submit_job uploads data under it
        (the create's 409 stays the authority when two submits race)."""
        try:
            self._raw(job.name)
        except JobNotFound:
            return
        raise JobExists(f"training job {self.namespace}/{job.name} already exists")

    def submit(self, job: TrainingJob) -> None:
        body = job.to_dict()
        body.pop("status", None)
        body["metadata"]["namespace"] = self.namespace
        # The controller checks again against its own default root; this one fails before anything exists.
        issues = tenancy_issues(job.model_copy(update={"metadata": job.metadata.model_copy(
            update={"namespace": self.namespace})}), self._output)
        if issues:
            raise SpecError(issues, source=f"{self.namespace}/{job.name}")
        try:
            self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)
        except self._client.ApiException as exc:
            raise self._error(exc, job.name, "creating") from exc

    def _raw(self, name: str) -> dict[str, Any]:
        check_job_name(name)  # never a path segment of an API URL unchecked
        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        except self._client.ApiException as exc:
            raise self._error(exc, name, "reading") from exc

    def get(self, name: str) -> TrainingJob:
        return _from_wire(self._raw(name))

    def list(self) -> list[TrainingJob]:
        try:
            items = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)["items"]
        except self._client.ApiException as exc:
            raise self._error(exc, "*", "listing") from exc
        return sorted((_from_wire(i) for i in items), key=lambda j: j.name)

    def _artifacts(self, job: TrainingJob) -> ArtifactURIs:
        return ArtifactURIs.of(job, self._output)

    def logs(self, name: str, follow: bool = False) -> Iterator[str]:
        """The trainer's log from its pods while they exist; afterwards the
        archived logs (``<output>/<namespace>/<job>/logs/``) from the object store."""
        seen = 0
        while True:
            job = self.get(name)
            lines = self._pod_lines(name)
            if lines is None:
                lines = self._archived_lines(job)
            yield from lines[seen:]
            seen = max(seen, len(lines))
            if not follow or (job.status is not None and job.status.phase.finished):
                return
            time.sleep(1.0)

    def _pod_lines(self, name: str) -> list[str] | None:
        check_job_name(name)  # it becomes a label selector
        try:
            pods = self.core.list_namespaced_pod(self.namespace, label_selector=f"{JOB_NAME_LABEL}={name}").items
        except self._client.ApiException as exc:
            raise self._error(exc, name, "listing pods of") from exc
        if not pods:
            return None
        latest = max(pods, key=lambda p: int((p.metadata.labels or {}).get(ATTEMPT_LABEL, "0")))
        try:
            text = self.core.read_namespaced_pod_log(latest.metadata.name, self.namespace, container="trainer")
        except self._client.ApiException:
            return None  # no kubelet to ask (or the pod is gone): fall back to the archive
        return text.splitlines()

    def _archived_lines(self, job: TrainingJob) -> list[str]:
        prefix = self._artifacts(job).logs
        try:
            store = open_store(prefix, self.settings)
            lines: list[str] = []
            for info in sorted(store.list(prefix), key=lambda o: o.key):
                lines.extend(store.read_bytes(info.uri).decode("utf-8", "replace").splitlines())
            return lines
        except TrainforgeError:
            return []

    def metrics(self, name: str) -> list[MetricRecord]:
        job = self.get(name)
        uri = (job.status.artifacts.metrics if job.status and job.status.artifacts.metrics
               else self._artifacts(job).metrics)
        store = open_store(uri, self.settings)
        if not store.exists(uri):
            return []
        return read_stored_records(store, uri)

    def stop(self, name: str) -> None:
        check_job_name(name)
        patch = {"metadata": {"annotations": {STOP_ANNOTATION: "true"}}}
        try:
            self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name, patch)
        except self._client.ApiException as exc:
            raise self._error(exc, name, "stopping") from exc

    def default_output(self) -> str:
        return self._output

    def default_data_root(self) -> str:
        return self._data_root


def _from_wire(raw: dict[str, Any]) -> TrainingJob:
    meta = raw["metadata"]
    return TrainingJob.model_validate({
        "apiVersion": raw["apiVersion"], "kind": raw["kind"],
        "metadata": {k: meta[k] for k in ("name", "namespace", "labels", "annotations") if k in meta},
        "spec": raw["spec"], "status": raw.get("status") or {},
    })


def _api_message(exc: Any) -> str:
    import json

    try:
        return str(json.loads(exc.body).get("message", exc.body))
    except (TypeError, ValueError):
        return str(exc.body or exc.reason)
