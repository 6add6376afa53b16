"""Issue 9, point 5: job pods and the controller at least privilege, on the real
control plane (apiserver with RBAC, PodSecurity and ServiceAccount admission;
kwok plays the kubelet).

- the Job the controller builds is admitted in a namespace that enforces the
  ``restricted`` Pod Security Standard, and its pods mount no API token;
- a user's env value cannot expand another variable of the pod;
- with ``controller.watchNamespace`` the chart's controller can act in that
  namespace only, holds nothing cluster-wide, and still runs a job end to end
  with exactly those rights.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.controller.conftest import trainforge_crd  # noqa: F401 - the CRD fixture
from tests.controller.test_manifests import can_i
from tests.infra import naming
from tests.infra.waiting import wait_until
from tests.integration.test_stager_image import stager_image  # noqa: F401 - the image fixture
from trainforge.config import S3Settings, Settings
from trainforge.instances import DEFAULT_CATALOG
from trainforge.spec import TrainingJob
from trainforge.storage import open_store
from trainforge_controller import GROUP, PLURAL, VERSION
from trainforge_controller.builder import build_job
from trainforge_controller.leader import LeaderElector
from trainforge_controller.main import Controller
from trainforge_controller.settings import ControllerSettings
from trainforge_controller.wire import Wire, core_path

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "trainforge"
TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
SMUGGLE = "$(AWS_SECRET_ACCESS_KEY)"


def _restricted(kube: Any, namespace: str) -> None:
    kube.kubectl("label", "namespace", namespace, "--overwrite",
                 "pod-security.kubernetes.io/enforce=restricted",
                 "pod-security.kubernetes.io/enforce-version=latest")


def _job(namespace: str, **spec: Any) -> TrainingJob:
    return TrainingJob.model_validate({"metadata": {"name": "hostile", "namespace": namespace},
                                       "spec": {"image": "registry.example.com/any:1", **spec}})


def test_job_pods_pass_restricted_pod_security_and_mount_no_token(kube: Any, kube_api: Any,
                                                                  kube_namespace: str) -> None:
    _restricted(kube, kube_namespace)
    job = _job(kube_namespace, env={"TOKEN": SMUGGLE}, hyperparameters={"lr": SMUGGLE})
    body = build_job(job, "0b6e1c9e-0000-4000-8000-000000000000", 1, DEFAULT_CATALOG["cpu-small"],
                     ControllerSettings(), 600)
    body["metadata"].pop("ownerReferences")  # no TrainingJob to own it here
    client.BatchV1Api(kube_api).create_namespaced_job(kube_namespace, body)
    core = client.CoreV1Api(kube_api)
    # The Job controller creates the pod through admission: PodSecurity would refuse it.
    pods = wait_until(lambda: core.list_namespaced_pod(kube_namespace, label_selector="job-name=hostile-a1").items,
                      timeout=60, what="the Job's pod", watch=kube.processes)
    pod = pods[0].spec
    assert pod.automount_service_account_token is False
    assert not [v for v in pod.volumes if v.projected is not None]  # no kube-api-access-* volume
    for container in pod.init_containers + pod.containers:
        assert TOKEN_PATH not in [m.mount_path for m in container.volume_mounts or []], container.name
        assert container.security_context.allow_privilege_escalation is False
        assert container.security_context.capabilities.drop == ["ALL"]
    assert (pod.security_context.run_as_non_root, pod.security_context.run_as_user) == (True, 10001)
    env = {e.name: e.value for e in pod.containers[0].env}
    assert env["TOKEN"] == env["SM_HP_LR"] == "$$(AWS_SECRET_ACCESS_KEY)"  # the kubelet reads "$(...)" literally


def test_restricted_namespace_refuses_a_pod_without_the_hardening(kube: Any, kube_namespace: str) -> None:
    """The check above is not vacuous: the same pod, unhardened, is refused."""
    _restricted(kube, kube_namespace)
    template = build_job(_job(kube_namespace), "u", 1, DEFAULT_CATALOG["cpu-small"], ControllerSettings(),
                         600)["spec"]["template"]
    spec = template["spec"]
    spec.pop("securityContext")
    for container in spec["initContainers"] + spec["containers"]:
        container.pop("securityContext")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "unhardened", "namespace": kube_namespace},
           "spec": spec}
    result = kube.kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(pod), check=False)
    assert result.returncode != 0 and "violates PodSecurity" in result.stderr, result.stderr


# --- the controller's RBAC with watchNamespace ---------------------------------------

def _helm(binary: Path, *args: str) -> str:
    result = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _rbac(binary: Path, release_ns: str, watch_ns: str) -> list[dict[str, Any]]:
    rendered = _helm(binary, "template", "trainforge", str(CHART), "--namespace", release_ns,
                     "--show-only", "templates/rbac.yaml", f"--set=controller.watchNamespace={watch_ns}")
    return [d for d in yaml.safe_load_all(rendered) if d]


@pytest.fixture
def namespaced_controller(kube: Any, kube_api: Any, kube_namespace: str,
                          helm_binary: Path) -> Iterator[tuple[str, str, str]]:
    """The chart's RBAC applied with watchNamespace = a fresh namespace and the release in
    another: (service account user, release namespace, watched namespace)."""
    core = client.CoreV1Api(kube_api)
    release_ns = naming.dns_label(kube_namespace, prefix="rel")
    core.create_namespace({"metadata": {"name": release_ns, "labels": {"trainforge.dev/test": "true"}}})
    docs = _rbac(helm_binary, release_ns, kube_namespace)
    assert not [d for d in docs if d["kind"].startswith("Cluster")]  # nothing cluster-wide
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
    yield f"system:serviceaccount:{release_ns}:trainforge-controller", release_ns, kube_namespace
    core.delete_namespace(release_ns)


def test_namespaced_controller_cannot_reach_beyond_its_namespace(kube: Any, namespaced_controller: Any) -> None:
    user, release_ns, watched = namespaced_controller
    for verb, resource in [("list", "trainingjobs.trainforge.dev"), ("watch", "pods"), ("create", "jobs.batch"),
                           ("patch", "trainingjobs.trainforge.dev:status"), ("create", "events")]:
        assert can_i(kube, user, verb, resource, watched), (verb, resource)
        assert not can_i(kube, user, verb, resource, "default"), (verb, resource, "default")
        assert not can_i(kube, user, verb, resource, ""), (verb, resource, "all namespaces")
    assert can_i(kube, user, "update", "leases.coordination.k8s.io/trainforge-controller", release_ns)
    assert can_i(kube, user, "get", "configmaps/trainforge-instances", release_ns)
    for verb, resource, namespace in [
        ("get", "secrets", watched), ("list", "secrets", release_ns), ("delete", "pods", watched),
        ("create", "pods", watched), ("create", "pods:exec", watched), ("delete", "jobs.batch", watched),
        ("update", "trainingjobs.trainforge.dev", watched), ("create", "rolebindings.rbac.authorization.k8s.io", watched),
        ("escalate", "roles.rbac.authorization.k8s.io", release_ns), ("list", "nodes", ""),
        ("create", "jobs.batch", release_ns), ("list", "trainingjobs.trainforge.dev", release_ns),
    ]:
        assert not can_i(kube, user, verb, resource, namespace), (verb, resource, namespace)


def test_namespaced_controller_runs_a_job_with_exactly_its_rights(
    kube: Any, kube_api: Any, trainforge_crd: Any, namespaced_controller: Any,  # noqa: F811
    minio_bucket: Any, tmp_path: Path,
) -> None:
    user, release_ns, watched = namespaced_controller
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_config_map(release_ns, {"metadata": {"name": "trainforge-instances"},
                                                   "data": {"instances.yaml": yaml.safe_dump(
                                                       [DEFAULT_CATALOG["cpu-small"].model_dump(mode="json")])}})
    api = kube.api_client()
    api.set_default_header("Impersonate-User", user)  # the controller's own identity, nothing more
    for call in (lambda: client.CoreV1Api(api).list_namespaced_secret(watched),
                 lambda: Wire(api).request("GET", core_path(watched, "secrets"))):
        with pytest.raises(client.ApiException) as denied:  # both of its paths to the API carry it
            call()
        assert denied.value.status == 403
    settings = ControllerSettings(catalog_namespace=release_ns, requeue_seconds=0.5, resync_seconds=5,
                                  default_output=minio_bucket.uri("jobs/"))
    store_settings = Settings(home=tmp_path, s3=S3Settings(
        endpoint_url=minio_bucket.endpoint, access_key_id=minio_bucket.access_key,
        secret_access_key=minio_bucket.secret_key, region=minio_bucket.region))
    controller = Controller(api, settings, namespace=watched, watch_seconds=2,
                            store_opener=lambda uri: open_store(uri, store_settings))
    stop = threading.Event()
    leader = LeaderElector(api, release_ns, lease_seconds=3)  # renewed every second: get + update
    thread = threading.Thread(target=controller.run, args=(stop, leader), daemon=True)
    thread.start()
    try:
        client.CustomObjectsApi(kube_api).create_namespaced_custom_object(GROUP, VERSION, watched, PLURAL, {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingJob", "metadata": {"name": "two"},
            "spec": {"image": "registry.example.com/any:1", "instance": {"type": "cpu-small", "count": 2}}})
        batch = client.BatchV1Api(kube_api)
        wait_until(lambda: batch.read_namespaced_job("two-a1", watched), timeout=60, what="Job two-a1",
                   watch=kube.processes)
        assert core.read_namespaced_service("two", watched).spec.cluster_ip == "None"
        custom = client.CustomObjectsApi(kube_api)
        wait_until(lambda: (custom.get_namespaced_custom_object(GROUP, VERSION, watched, PLURAL, "two")
                            .get("status") or {}).get("phase") in ("Training", "Uploading", "Completed", "Failed"),
                   timeout=60, what="a status written by the controller", watch=kube.processes)
        wait_until(lambda: core.list_namespaced_event(watched, field_selector="involvedObject.name=two").items,
                   timeout=30, what="an event from the controller", watch=kube.processes)
        lease = client.CoordinationV1Api(kube_api).read_namespaced_lease("trainforge-controller", release_ns)
        renewed = lease.spec.renew_time
        wait_until(lambda: client.CoordinationV1Api(kube_api).read_namespaced_lease(
            "trainforge-controller", release_ns).spec.renew_time != renewed, timeout=30,
            what="the lease renewed", watch=kube.processes)
        assert not stop.is_set()  # it kept its lease throughout
    finally:
        stop.set()
        thread.join(timeout=10)


# --- the stager under the pod's restrictions, for real ---------------------------------

def test_stager_image_works_as_the_pod_runs_it(docker_client: Any, stager_image: str,  # noqa: F811
                                               minio_bucket: Any, tmp_path: Path) -> None:
    """Read-only root, only /opt/ml and /tmp writable, the pod's uid (not the image's),
    no capabilities, no privilege escalation: stage in, then pack and upload a model."""
    s3 = minio_bucket.s3_client()
    s3.put_object(Bucket=minio_bucket.name, Key="data/train/part-0.csv", Body=b"rows\n")
    job = {"apiVersion": "trainforge.dev/v1alpha1", "kind": "TrainingJob",
           "metadata": {"name": "hardened", "namespace": "team-a"},
           "spec": {"image": "example/trainer:1",
                    "inputs": [{"channel": "train", "uri": minio_bucket.uri("data/train/")}]}}
    opt_ml = tmp_path / "opt-ml"
    opt_ml.mkdir()
    os.chmod(opt_ml, 0o777)  # an emptyDir with fsGroup: the pod's uid may write it
    (opt_ml / "model").mkdir()
    os.chmod(opt_ml / "model", 0o777)  # where this test plays the trainer
    uid = ControllerSettings().job_uid
    hardened = {"user": f"{uid}:{uid}", "read_only": True, "tmpfs": {"/tmp": "rw,size=64m"},
                "cap_drop": ["ALL"], "security_opt": ["no-new-privileges"], "remove": True,
                "network_mode": "host", "volumes": {str(opt_ml): {"bind": "/opt/ml", "mode": "rw"}}}
    env = {**minio_bucket.env(), "TRAINFORGE_JOB": json.dumps(job), "JOB_COMPLETION_INDEX": "0",
           "TRAINFORGE_OUTPUT_URI": minio_bucket.uri("out/")}
    docker_client.containers.run(stager_image, ["in"], environment=env, **hardened)
    assert (opt_ml / "input" / "data" / "train" / "part-0.csv").read_bytes() == b"rows\n"
    (opt_ml / "model" / "weights.bin").write_bytes(b"w" * 1000)
    output = docker_client.containers.run(stager_image, ["out"], environment=env, **hardened).decode()
    assert "staged out" in output
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=minio_bucket.name, Prefix="out/").get("Contents", [])]
    assert [k for k in keys if k.endswith("model.tar.gz")], keys
