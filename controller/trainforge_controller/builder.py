"""Pure functions: a TrainingJob (+ catalog entry, settings) -> the children the
cluster should hold. No I/O; tested as tables in tests/controller/test_builder.py.

One TrainingJob becomes, per attempt, an Indexed batch/v1 Job
``<job>-a<attempt>`` with ``backoffLimit: 0`` (retries are the controller's, one
Job per attempt) and, when it spans several hosts, a headless Service ``<job>``
(stable across attempts) that gives the pods DNS names for rendezvous. A
single-host job needs no Service: it would cost three more objects per job
(the Service, its Endpoints and EndpointSlice) that nothing reads.
"""

from __future__ import annotations

import json
from typing import Any

from trainforge.contract import HostInfo, Layout, contract_env, host_names
from trainforge.instances import InstanceType
from trainforge.spec import TrainingJob
from trainforge.artifacts import ArtifactURIs

from trainforge.names import (  # noqa: F401 - re-exported to the controller's modules
    ATTEMPT_LABEL, CREDENTIALS_EXPIRY_ANNOTATION, JOB_NAME_LABEL, JOB_SPEC_ANNOTATION, MANAGED_BY, STOP_ANNOTATION,
)

from . import GROUP, KIND, VERSION
from .settings import ControllerSettings

GPU_RESOURCE = "nvidia.com/gpu"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
INDEX_LABEL = "batch.kubernetes.io/job-completion-index"
# Per-job storage credentials (credentials.py): a Secret per job, mounted into the
# stagers only (never the trainer) as an AWS credentials file the kubelet replaces
# when the controller refreshes it.
CREDENTIALS_SECRET_SUFFIX = "-tf-storage"
CREDENTIALS_FILE_KEY = "credentials"
CREDENTIALS_VOLUME = "storage-credentials"
CREDENTIALS_MOUNT = "/var/run/trainforge/storage"
CREDENTIALS_ENV_KEYS = ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION")  # copied from the namespace's Secret
FAILURE_FILE = Layout().failure_file
TRAINER = "trainer"
STAGE_IN = "stage-in"
SIDECAR = "stager"
STAGER_TMP = "stager-tmp"  # the stagers' /tmp: their root filesystem is read-only


def attempt_job_name(job_name: str, attempt: int) -> str:
    return f"{job_name}-a{attempt}"


def service_name(job_name: str) -> str:
    return job_name


def credentials_secret_name(job_name: str) -> str:
    return f"{job_name}{CREDENTIALS_SECRET_SUFFIX}"


def output_uri(job: TrainingJob, settings: ControllerSettings) -> str:
    return job.spec.output.uri if job.spec.output else settings.default_output


def artifacts(job: TrainingJob, settings: ControllerSettings) -> ArtifactURIs:
    return ArtifactURIs.of(job, settings.default_output)


def labels(job: TrainingJob, attempt: int | None = None) -> dict[str, str]:
    out = {**MANAGED_BY, JOB_NAME_LABEL: job.name}
    if attempt is not None:
        out[ATTEMPT_LABEL] = str(attempt)
    if QUEUE_LABEL in job.metadata.labels:
        out[QUEUE_LABEL] = job.metadata.labels[QUEUE_LABEL]
    return out


def queued(job: TrainingJob) -> bool:
    """Whether the job names a Kueue LocalQueue. Its Jobs are then created
    suspended, so no pod starts before Kueue admits the Job (by resuming it):
    the same thing Kueue's own Job webhook does, done here so that admission
    never depends on that webhook being reachable (it often is not, e.g.
    without cluster DNS) or on its failure policy."""
    return bool(job.metadata.labels.get(QUEUE_LABEL))


def owner_reference(job: TrainingJob, uid: str) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": job.name, "uid": uid,
            "controller": True, "blockOwnerDeletion": True}


def needs_service(job: TrainingJob) -> bool:
    return job.spec.instance.count > 1


def build_service(job: TrainingJob, uid: str, settings: ControllerSettings) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": service_name(job.name), "namespace": job.metadata.namespace,
                     "labels": labels(job), "ownerReferences": [owner_reference(job, uid)]},
        "spec": {"clusterIP": "None", "publishNotReadyAddresses": True,
                 "selector": {JOB_NAME_LABEL: job.name},
                 "ports": [{"name": "rendezvous", "port": settings.master_port}]},
    }


def escape_expansion(value: str) -> str:
    """A literal env value: Kubernetes expands ``$(VAR)`` in env values (``$$`` is
    a literal ``$``), so a hyperparameter or spec.env value ``$(AWS_SECRET_ACCESS_KEY)``
    would otherwise read another variable of the container."""
    return value.replace("$", "$$")


def _env_list(env: dict[str, str]) -> list[dict[str, Any]]:
    # Every value literal: all of them carry, or may carry, what a user wrote.
    return [{"name": k, "value": escape_expansion(v)} for k, v in env.items()]


def pod_security_context(settings: ControllerSettings) -> dict[str, Any]:
    """Non-root, one uid for every container (fsGroup makes the shared emptyDirs
    theirs), the runtime's default seccomp filter."""
    uid = settings.job_uid
    return {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid, "fsGroup": uid,
            "seccompProfile": {"type": "RuntimeDefault"}}


def container_security_context(read_only_root: bool) -> dict[str, Any]:
    """No setuid gains, no capabilities. A read-only root only for the stagers: a
    trainer image may write anywhere in its own filesystem (caches, ~/.config)."""
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": read_only_root}


def trainer_env(job: TrainingJob, instance: InstanceType, attempt: int,
                settings: ControllerSettings) -> list[dict[str, Any]]:
    """The contract's env. Multi-host: NODE_RANK from the completion index, and
    MASTER_ADDR the first pod's DNS name; the current host is in resourceconfig.json
    (written per host by the stage-in container), not in SM_CURRENT_HOST."""
    count = job.spec.instance.count
    hosts = host_names(job.name, count)
    env = contract_env(
        job_name=job.name, layout=Layout(), hyperparameters=job.spec.hyperparameters,
        inputs=job.spec.inputs, host=HostInfo(hosts[0], hosts), instance=instance,
        master_port=settings.master_port, attempt=attempt, extra=dict(job.spec.env))
    head: list[dict[str, Any]] = [{"name": "TRAINFORGE_HOST_INDEX", "valueFrom": {
        "fieldRef": {"fieldPath": f"metadata.labels['{INDEX_LABEL}']"}}}]
    tail: list[dict[str, Any]] = []
    if count > 1:
        for key in ("SM_CURRENT_HOST", "SM_TRAINING_ENV", "NODE_RANK"):
            env.pop(key, None)
        env["MASTER_ADDR"] = f"{attempt_job_name(job.name, attempt)}-0.{service_name(job.name)}"
        # The one value meant to be expanded, so not through _env_list.
        tail.append({"name": "NODE_RANK", "value": "$(TRAINFORGE_HOST_INDEX)"})
    return head + _env_list(env) + tail


def job_spec_json(job: TrainingJob) -> str:
    """The TrainingJob as the stagers read it (``TRAINFORGE_JOB``), compact."""
    return json.dumps(job.model_dump(mode="json", by_alias=True, exclude={"status"}, exclude_none=True),
                      sort_keys=True, separators=(",", ":"))


def _storage_access(settings: ControllerSettings, credentials_secret: str | None) -> dict[str, Any]:
    """How a stager reaches the store: the job's own scoped credentials (a
    mounted credentials file, plus endpoint and region from the same Secret),
    or, where none could be minted, the namespace's shared Secret."""
    if credentials_secret is None:
        return {"envFrom": [{"secretRef": {"name": settings.object_store_secret, "optional": True}}]}
    env: list[dict[str, Any]] = [{"name": "AWS_SHARED_CREDENTIALS_FILE",
                                  "value": f"{CREDENTIALS_MOUNT}/{CREDENTIALS_FILE_KEY}"}]
    env += [{"name": key, "valueFrom": {"secretKeyRef": {"name": credentials_secret, "key": key,
                                                         "optional": True}}}
            for key in CREDENTIALS_ENV_KEYS]
    return {"env": env, "volumeMounts": [{"name": CREDENTIALS_VOLUME, "mountPath": CREDENTIALS_MOUNT,
                                          "readOnly": True}]}


def _stager(job: TrainingJob, name: str, command: str, settings: ControllerSettings,
            always: bool = False, credentials_secret: str | None = None) -> dict[str, Any]:
    env = {
        "TRAINFORGE_OUTPUT_URI": output_uri(job, settings),
        "TRAINFORGE_SYNC_SECONDS": str(settings.checkpoint_sync_seconds),
        "PYTHONUNBUFFERED": "1",
    }
    container: dict[str, Any] = {
        "name": name, "image": settings.stager_image,
        "command": ["python", "-m", "trainforge.stage", command],
        "env": [{"name": "TRAINFORGE_HOST_INDEX", "valueFrom": {
                    "fieldRef": {"fieldPath": f"metadata.labels['{INDEX_LABEL}']"}}},
                # One copy in the pod's annotations, not one per stager.
                {"name": "TRAINFORGE_JOB", "valueFrom": {
                    "fieldRef": {"fieldPath": f"metadata.annotations['{JOB_SPEC_ANNOTATION}']"}}},
                ] + _env_list(env),
        "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}},
        "volumeMounts": [{"name": "opt-ml", "mountPath": Layout().root},
                         {"name": STAGER_TMP, "mountPath": "/tmp"}],  # model.tar.gz is packed there
        "securityContext": container_security_context(read_only_root=True),
    }
    access = _storage_access(settings, credentials_secret)
    container["env"] += access.get("env", [])
    container["volumeMounts"] += access.get("volumeMounts", [])
    if "envFrom" in access:
        container["envFrom"] = access["envFrom"]
    if always:
        container["restartPolicy"] = "Always"  # a native sidecar
    return container


def build_job(job: TrainingJob, uid: str, attempt: int, instance: InstanceType,
              settings: ControllerSettings, deadline_seconds: int,
              suspend: bool | None = None, credentials_secret: str | None = None) -> dict[str, Any]:
    """The Indexed Job for ``attempt`` (1-based). ``credentials_secret``: the
    job's own storage credentials (credentials.py), else the namespace's Secret."""
    count = job.spec.instance.count
    resources = {"cpu": _cpu(instance.cpus), "memory": f"{int(instance.memory_gib * 1024)}Mi"}
    if instance.gpus:
        resources[GPU_RESOURCE] = str(instance.gpus)
    shm = f"{max(1, int(instance.memory_gib // 2))}Gi"
    trainer = {
        "name": TRAINER, "image": job.spec.image,
        "env": trainer_env(job, instance, attempt, settings),
        "resources": {"requests": dict(resources), "limits": dict(resources)},
        "volumeMounts": [{"name": "opt-ml", "mountPath": Layout().root},
                         {"name": "dshm", "mountPath": "/dev/shm"}],
        "terminationMessagePath": FAILURE_FILE,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "ports": [{"name": "rendezvous", "containerPort": settings.master_port}],
        "securityContext": container_security_context(read_only_root=False),
    }
    stage_in = _stager(job, STAGE_IN, "in", settings, credentials_secret=credentials_secret)
    # The stage-in container runs alone, before the sidecar and the trainer: the
    # trainer's CPU request costs the pod nothing more (a pod's request is the
    # larger of its init containers' and its running containers'), and gives the
    # download its share of a busy node.
    stage_in["resources"]["requests"]["cpu"] = resources["cpu"]
    pod_labels = labels(job, attempt)
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        # A trainer has no business with the API: no token in the pod.
        "automountServiceAccountToken": False,
        "securityContext": pod_security_context(settings),
        "terminationGracePeriodSeconds": job.spec.stopping.grace_period_seconds + settings.stage_out_seconds,
        "initContainers": [stage_in,
                           _stager(job, SIDECAR, "sync", settings, always=True,
                                   credentials_secret=credentials_secret)],
        "containers": [trainer],
        "volumes": [{"name": "opt-ml", "emptyDir": {}},
                    {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": shm}},
                    {"name": STAGER_TMP, "emptyDir": {}}],
    }
    if credentials_secret is not None:
        pod_spec["volumes"].append({"name": CREDENTIALS_VOLUME, "secret": {
            "secretName": credentials_secret,
            "items": [{"key": CREDENTIALS_FILE_KEY, "path": CREDENTIALS_FILE_KEY}]}})
    if needs_service(job):
        pod_spec["subdomain"] = service_name(job.name)
    if settings.host_network:
        pod_spec["hostNetwork"] = True
        pod_spec["dnsPolicy"] = "ClusterFirstWithHostNet"
        del trainer["ports"]  # a containerPort would claim the host's port: one job pod per node
    if instance.node_selector:
        pod_spec["nodeSelector"] = dict(instance.node_selector)
    if instance.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in instance.tolerations]
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": attempt_job_name(job.name, attempt), "namespace": job.metadata.namespace,
                     "labels": pod_labels, "ownerReferences": [owner_reference(job, uid)]},
        "spec": {
            "parallelism": count, "completions": count, "completionMode": "Indexed",
            "backoffLimit": 0, "activeDeadlineSeconds": max(1, deadline_seconds),
            # An evicted or preempted pod fails the attempt by a rule that names it:
            # the Job's condition keeps the cause after the pod is deleted, and the
            # controller resumes such an attempt outside the retry budget (status.decide).
            "podFailurePolicy": {"rules": [{"action": "FailJob", "onPodConditions": [
                {"type": "DisruptionTarget", "status": "True"}]}]},
            "suspend": (job.spec.suspend or queued(job)) if suspend is None else suspend,
            "template": {"metadata": {"labels": pod_labels,
                                      "annotations": {JOB_SPEC_ANNOTATION: job_spec_json(job)}},
                         "spec": pod_spec},
        },
    }


def _cpu(cpus: float) -> str:
    return str(int(cpus)) if float(cpus).is_integer() else f"{int(cpus * 1000)}m"
