"""Tenants are separated (issue 9, point 4), attacked on the real MinIO and the
real control plane.

- Keys: two ``mnist-001`` jobs in two namespaces never share a key.
- Specs: output or checkpoints that land in another job's tree are refused,
  naming the field, by the local backend, the SDK's kubernetes backend and the
  controller (a terminal InvalidSpec).
- Credentials: the per-job STS credentials the controller mints read only the
  job's inputs and write only its own tree and checkpoints; the spec cannot
  widen what the namespace's Secret allows; a refreshed credentials file is
  picked up by the next store.
- The controller never writes, with its own credentials, where a spec told it.
"""

from __future__ import annotations

import base64
import configparser
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.controller.conftest import trainforge_crd  # noqa: F401  (the CRD on the session's cluster)
from trainforge.artifacts import ArtifactURIs, channel_uri, default_checkpoints, tenancy_issues
from trainforge.config import S3Settings, Settings
from trainforge.errors import SpecError, StorageUnreachable
from trainforge.spec import TrainingJob
from trainforge.storage import open_store
from trainforge.storage.policy import policy_text, session_policy
from trainforge.storage.sts import StsUnavailable, TemporaryCredentials, assume_role

DEFAULT = "s3://trainforge/jobs/"


def tj(name: str = "mnist-001", namespace: str = "team-a", **spec: Any) -> TrainingJob:
    return TrainingJob.model_validate({"metadata": {"name": name, "namespace": namespace},
                                       "spec": {"image": "img:1", **spec}})


# -- keys: the namespace is in every path ------------------------------------------
def test_two_jobs_of_one_name_in_two_namespaces_share_no_key() -> None:
    a, b = ArtifactURIs.of(tj(namespace="team-a"), DEFAULT), ArtifactURIs.of(tj(namespace="team-b"), DEFAULT)
    keys_a = {a.model, a.output, a.metrics, a.logs, a.log("algo-1", 1), str(a.root)}
    keys_b = {b.model, b.output, b.metrics, b.logs, b.log("algo-1", 1), str(b.root)}
    assert not keys_a & keys_b
    assert a.model == "s3://trainforge/jobs/team-a/mnist-001/output/model.tar.gz"
    assert not str(b.root).startswith(str(a.root)) and not str(a.root).startswith(str(b.root))
    assert str(channel_uri("s3://data/up/", "team-a", "j", "train")) == "s3://data/up/team-a/j/train/"


@pytest.mark.parametrize(("output", "namespace", "job"), [
    # Attacker in team-a picks its output root so that its tree aliases team-b's job "victim".
    ("s3://trainforge/jobs/team-b/", "team-a", "victim"),
    ("s3://trainforge/jobs/team-b/victim/", "team-a", "x"),
    ("s3://trainforge/", "jobs", "team-b"),  # <root>/jobs/team-b/ is all of team-b's trees
    ("s3://trainforge/jobs/", "team-a", "output"),  # the own slot: allowed
])
def test_an_output_root_cannot_alias_another_jobs_tree(output: str, namespace: str, job: str) -> None:
    issues = tenancy_issues(tj(job, namespace, output={"uri": output}), DEFAULT)
    if output == DEFAULT:
        assert issues == []
    else:
        assert [i.path for i in issues] == ["spec.output.uri"], issues
        assert "other jobs" in issues[0].message


@pytest.mark.parametrize(("checkpoints", "ok"), [
    ("s3://trainforge/jobs/team-a/other-job/", False),           # a sibling job's tree
    ("s3://trainforge/jobs/team-b/mnist-001/checkpoints/", False),  # another namespace's
    ("s3://trainforge/jobs/", False),                             # the whole root
    ("s3://trainforge/", False),                                  # above the root
    ("s3://trainforge/jobs/team-a/mnist-001/", False),            # its own model and logs
    ("s3://trainforge/jobs/team-a/mnist-001/output/", False),
    ("s3://trainforge/jobs/team-a/mnist-001/checkpoints/", True),
    ("s3://models/team-b/whatever/", False),                      # under the job's own output root
    ("s3://ckpt/shared-by-choice/", True),                        # outside every platform root
])
def test_checkpoints_cannot_point_into_another_jobs_artifacts(checkpoints: str, ok: bool) -> None:
    job = tj(output={"uri": "s3://models/"} if checkpoints.startswith("s3://models/") else None,
             checkpoints={"uri": checkpoints})
    issues = tenancy_issues(job, DEFAULT)
    assert (issues == []) is ok, issues
    if not ok:
        assert [i.path for i in issues] == ["spec.checkpoints.uri"]
    assert not tenancy_issues(tj(checkpoints={"uri": default_checkpoints(tj(), DEFAULT)}), DEFAULT)


def test_the_local_backend_refuses_a_spec_aimed_at_another_jobs_tree(tmp_path: Path) -> None:
    from trainforge.backends.local.backend import LocalBackend

    backend = LocalBackend("process", Settings(home=tmp_path))
    job = tj("thief", "default", instance={"type": "local"},
             checkpoints={"uri": "local://trainforge-artifacts/default/victim/"})
    with pytest.raises(SpecError) as caught:
        backend.submit(job)
    assert [i.path for i in caught.value.issues] == ["spec.checkpoints.uri"]
    assert not (tmp_path / "jobs" / "thief").exists()  # nothing was created


# -- session policies on the real MinIO ----------------------------------------------
def _parent(bucket: Any) -> S3Settings:
    return S3Settings(endpoint_url=bucket.endpoint, region=bucket.region,
                      access_key_id=bucket.access_key, secret_access_key=bucket.secret_key)


def _store_with(creds: TemporaryCredentials, parent: S3Settings, tmp_path: Path) -> Any:
    settings = Settings(home=tmp_path, s3=creds.settings(parent).model_copy(
        update={"multipart_threshold_mb": 5, "multipart_chunk_mb": 5}))
    return lambda uri: open_store(uri, settings)


def _denied(call: Any) -> str:
    with pytest.raises(StorageUnreachable) as caught:
        call()
    assert "AccessDenied" in str(caught.value), caught.value
    return str(caught.value)


def test_minted_credentials_read_only_the_inputs_and_write_only_the_jobs_own_prefixes(
        minio_bucket: Any, tmp_path: Path) -> None:
    from trainforge_controller.credentials import job_policy

    b = minio_bucket
    root = b.s3_client()
    for key in ("data/train/a.bin", "data/train/sub/b.bin", "data/train-private/c.bin", "data/other/d.bin",
                "out/team-b/mnist-001/output/model.tar.gz", "out/team-a/other/output/model.tar.gz",
                "ckpt/team-a/mnist-001/epoch-1.pt", "ckpt/team-a/mnist-002/epoch-9.pt"):
        root.put_object(Bucket=b.name, Key=key, Body=b"victim:" + key.encode())
    job = tj(output={"uri": b.uri("out/")}, checkpoints={"uri": b.uri("ckpt/team-a/mnist-001/")},
             inputs=[{"channel": "train", "uri": b.uri("data/train/")}])
    policy = job_policy(job, b.uri("jobs/"))
    assert len(policy_text(policy)) <= 2048
    creds = assume_role(_parent(b), policy, 900, "tf-team-a-mnist-001")
    assert creds.session_token and creds.access_key_id != b.access_key
    store = _store_with(creds, _parent(b), tmp_path)
    art = ArtifactURIs.of(job, b.uri("jobs/"))

    # Reading the job's input works (listing and objects); anything else is AccessDenied.
    assert [o.key for o in store(b.uri("data/train/")).list(b.uri("data/train/"))] == \
        ["data/train/a.bin", "data/train/sub/b.bin"]
    assert store(b.uri()).read_bytes(b.uri("data/train/a.bin")) == b"victim:data/train/a.bin"
    store(b.uri()).download_prefix(b.uri("data/train/"), str(tmp_path / "in"))  # the lean GET, session token signed
    assert (tmp_path / "in" / "sub" / "b.bin").read_bytes() == b"victim:data/train/sub/b.bin"
    with pytest.raises(StorageUnreachable, match="access denied"):  # a HEAD's 403 carries no code
        store(b.uri()).download_file(b.uri("data/other/d.bin"), str(tmp_path / "d.bin"))
    _denied(lambda: store(b.uri()).read_bytes(b.uri("data/train-private/c.bin")))  # a sibling prefix
    _denied(lambda: store(b.uri()).read_bytes(b.uri("data/other/d.bin")))
    _denied(lambda: store(b.uri()).list(b.uri("data/")))
    _denied(lambda: store(b.uri()).read_bytes(b.uri("out/team-b/mnist-001/output/model.tar.gz")))
    _denied(lambda: store(b.uri()).read_bytes(b.uri("ckpt/team-a/mnist-002/epoch-9.pt")))

    # Writing its own tree and checkpoints works, multipart included.
    store(art.model).write_bytes(art.model, b"my model")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(6 * 1024 * 1024))
    store(art.output).upload_file(str(big), art.output)
    store(b.uri()).write_bytes(b.uri("ckpt/team-a/mnist-001/epoch-2.pt"), b"mine")
    assert store(b.uri()).read_bytes(b.uri("ckpt/team-a/mnist-001/epoch-1.pt")) == \
        b"victim:ckpt/team-a/mnist-001/epoch-1.pt"  # restore before a retry
    assert root.get_object(Bucket=b.name, Key="out/team-a/mnist-001/output/model.tar.gz")["Body"].read() \
        == b"my model"

    # Writing another job's or another namespace's tree, or its own inputs, is AccessDenied.
    for key in ("out/team-b/mnist-001/output/model.tar.gz", "out/team-a/other/output/model.tar.gz",
                "ckpt/team-a/mnist-002/epoch-9.pt", "data/train/a.bin", "jobs/team-a/mnist-001/x",
                "out/team-a/mnist-001-evil/output/model.tar.gz"):
        _denied(lambda key=key: store(b.uri()).write_bytes(b.uri(key), b"overwritten"))
    _denied(lambda: store(b.uri()).upload_file(str(big), b.uri("out/team-b/mnist-001/output/output.tar.gz")))
    for key in ("out/team-b/mnist-001/output/model.tar.gz", "ckpt/team-a/mnist-002/epoch-9.pt",
                "data/train/a.bin"):
        assert root.get_object(Bucket=b.name, Key=key)["Body"].read() == b"victim:" + key.encode()


def test_policy_of_an_object_input_does_not_leak_to_keys_sharing_its_prefix() -> None:
    policy = session_policy(read=["s3://data/set.csv"], write=["s3://out/team-a/j/"])
    objects = policy["Statement"][0]["Resource"]
    assert objects == ["arn:aws:s3:::data/set.csv", "arn:aws:s3:::data/set.csv/*", "arn:aws:s3:::out/team-a/j/*"]
    assert not any(r.endswith("set.csv*") for r in objects)


def test_the_spec_cannot_widen_what_the_namespaces_credentials_allow(
        minio: Any, minio_bucket: Any, mc_binary: Path, tmp_path: Path) -> None:
    """The parent is the namespace's Secret: a session policy granting another
    tenant's prefix (what a hostile spec asks for) still cannot write there."""
    b = minio_bucket
    user, secret = f"team-a-{b.name[:20]}", "team-a-secret-key-123"
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:*"], "Resource": [f"arn:aws:s3:::{b.name}/team-a/*"]},
        {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [f"arn:aws:s3:::{b.name}"]}]}
    policy_file = tmp_path / "policy.json"
    policy_file.write_text(json.dumps(policy))
    env = minio.mc_env()
    for args in (["admin", "user", "add", "test", user, secret],
                 ["admin", "policy", "create", "test", user, str(policy_file)],
                 ["admin", "policy", "attach", "test", user, "--user", user]):
        subprocess.run([str(mc_binary), *args], env=env, check=True, capture_output=True, timeout=60)
    b.s3_client().put_object(Bucket=b.name, Key="team-b/j/output/model.tar.gz", Body=b"victim")
    parent = S3Settings(endpoint_url=b.endpoint, region=b.region, access_key_id=user, secret_access_key=secret)
    hostile = tj(output={"uri": b.uri("team-a/")}, checkpoints={"uri": b.uri("team-b/j/")})
    from trainforge_controller.credentials import job_policy

    creds = assume_role(parent, job_policy(hostile, b.uri("jobs/")), 900, "tf-team-a-hostile")
    store = _store_with(creds, parent, tmp_path)
    _denied(lambda: store(b.uri()).write_bytes(b.uri("team-b/j/output/model.tar.gz"), b"overwritten"))
    store(b.uri()).write_bytes(b.uri("team-a/team-a/mnist-001/output/model.tar.gz"), b"mine")
    assert b.s3_client().get_object(Bucket=b.name, Key="team-b/j/output/model.tar.gz")["Body"].read() == b"victim"


def test_temporary_credentials_cannot_mint_more_and_say_so(minio_bucket: Any) -> None:
    b = minio_bucket
    creds = assume_role(_parent(b), session_policy(["s3://xyz/y/"], []), 900, "tf-a")
    with pytest.raises(StsUnavailable) as caught:
        assume_role(creds.settings(_parent(b)), session_policy(["s3://xyz/y/"], []), 900, "tf-b")
    assert "AssumeRole" in str(caught.value) and "AccessDenied" in str(caught.value)


def test_a_replaced_credentials_file_is_used_by_the_next_store(
        minio_bucket: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a stager sees when the controller refreshes the job's Secret: the
    kubelet swaps the mounted file; the next store reads the new one."""
    b = minio_bucket
    first = assume_role(_parent(b), session_policy([], [b.uri("one/")]), 900, "tf-first")
    second = assume_role(_parent(b), session_policy([], [b.uri("two/")]), 900, "tf-second")
    folder = tmp_path / "mounted"
    folder.mkdir()
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(folder / "credentials"))
    settings = Settings(home=tmp_path, s3=S3Settings(endpoint_url=b.endpoint, region=b.region))

    def mount(creds: TemporaryCredentials, version: str) -> None:  # the kubelet's atomic swap
        (folder / version).write_text(creds.credentials_file())
        link = folder / "credentials.tmp"
        link.unlink(missing_ok=True)
        link.symlink_to(folder / version)
        os.replace(link, folder / "credentials")

    mount(first, "v1")
    open_store(b.uri(), settings).write_bytes(b.uri("one/a"), b"1")
    _denied(lambda: open_store(b.uri(), settings).write_bytes(b.uri("two/a"), b"2"))
    mount(second, "v2")
    open_store(b.uri(), settings).write_bytes(b.uri("two/a"), b"2")
    _denied(lambda: open_store(b.uri(), settings).write_bytes(b.uri("one/b"), b"1"))


# -- the pods: the job's own Secret, in the stagers only -----------------------------
@pytest.mark.parametrize("secret", [None, "mnist-001-tf-storage"])
def test_stagers_reference_the_jobs_own_credentials_and_the_trainer_none(secret: str | None) -> None:
    from trainforge.instances import DEFAULT_CATALOG
    from trainforge_controller.builder import CREDENTIALS_MOUNT, build_job, credentials_secret_name
    from trainforge_controller.settings import ControllerSettings

    settings = ControllerSettings(object_store_secret="shared-creds")
    job = tj(instance={"type": "gpu-8x", "count": 2})
    assert credentials_secret_name(job.name) == "mnist-001-tf-storage"
    pod = build_job(job, "uid-1", 1, DEFAULT_CATALOG["gpu-8x"], settings, 60,
                    credentials_secret=secret)["spec"]["template"]["spec"]
    stagers = pod["initContainers"]
    trainer = pod["containers"][0]
    assert "envFrom" not in trainer and not any("AWS" in e["name"] for e in trainer["env"])
    assert all(m["mountPath"] != CREDENTIALS_MOUNT for m in trainer["volumeMounts"])
    for stager in stagers:
        env = {e["name"]: e for e in stager["env"]}
        if secret is None:  # the fallback: the namespace's shared Secret
            assert stager["envFrom"] == [{"secretRef": {"name": "shared-creds", "optional": True}}]
            assert "AWS_SHARED_CREDENTIALS_FILE" not in env
            continue
        assert "envFrom" not in stager  # the shared keys would outrank the file
        assert env["AWS_SHARED_CREDENTIALS_FILE"]["value"] == f"{CREDENTIALS_MOUNT}/credentials"
        assert env["AWS_ENDPOINT_URL"]["valueFrom"]["secretKeyRef"]["name"] == secret
        assert {"name": "storage-credentials", "mountPath": CREDENTIALS_MOUNT, "readOnly": True} \
            in stager["volumeMounts"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert ("storage-credentials" in volumes) is (secret is not None)
    if secret:
        assert volumes["storage-credentials"]["secret"] == {
            "secretName": secret, "items": [{"key": "credentials", "path": "credentials"}]}


def test_refresh_is_due_once_half_the_lifetime_is_gone() -> None:
    from datetime import datetime, timedelta, timezone

    from trainforge_controller.credentials import needs_refresh

    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert not needs_refresh(now + timedelta(seconds=3600), now, 3600)
    assert not needs_refresh(now + timedelta(seconds=1801), now, 3600)
    assert needs_refresh(now + timedelta(seconds=1799), now, 3600)
    assert needs_refresh(now - timedelta(seconds=1), now, 3600)


# -- the controller on the real control plane and MinIO --------------------------------
def _decode(secret: Any) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}


def _namespace_secret(h: Any, data: dict[str, str]) -> None:
    from kubernetes import client

    client.CoreV1Api(h.api).create_namespaced_secret(h.ns, {
        "metadata": {"name": h.settings.object_store_secret}, "stringData": data})


@pytest.fixture
def tenancy_harness(kube: Any, kube_api: Any, kube_namespace: str, minio_bucket: Any,
                    trainforge_crd: Any, tmp_path: Path) -> Iterator[Any]:
    from tests.controller.test_reconcile import Harness

    h = Harness(kube, kube_api, kube_namespace, minio_bucket, tmp_path)
    yield h
    h.stop()


def test_the_controller_mints_per_job_credentials_the_pods_use(tenancy_harness: Any, tmp_path: Path) -> None:
    from kubernetes import client

    from tests.infra.waiting import wait_until

    h = tenancy_harness
    b = h.bucket
    _namespace_secret(h, {**{k: v for k, v in b.env().items() if k != "AWS_ENDPOINT_URL_S3"}})
    h.start()
    out = b.uri("models/")
    h.submit("mnist-001", output={"uri": out}, inputs=[{"channel": "train", "uri": b.uri("data/train/")}],
             checkpoints={"uri": b.uri("ckpt/mnist-001/")})
    wait_until(lambda: h.jobs("mnist-001") == ["mnist-001-a1"], timeout=30, what="Job mnist-001-a1")
    core = client.CoreV1Api(h.api)
    secret = core.read_namespaced_secret("mnist-001-tf-storage", h.ns)
    owner = secret.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.uid) == ("TrainingJob", "mnist-001", h.get("mnist-001")["metadata"]["uid"])
    assert secret.metadata.annotations["trainforge.dev/credentials-expire"]
    pod = h.job("mnist-001-a1").spec.template.spec
    assert [v.secret.secret_name for v in pod.volumes if v.secret] == ["mnist-001-tf-storage"]
    for stager in pod.init_containers:
        assert not stager.env_from  # not the namespace's shared Secret
    assert not pod.containers[0].env_from and not pod.containers[0].volume_mounts[2:]

    # The minted credentials, as the stagers would read them, are the job's and no more.
    data = _decode(secret)
    parser = configparser.ConfigParser()
    parser.read_string(data["credentials"])
    minted = S3Settings(endpoint_url=data["AWS_ENDPOINT_URL"], region=data.get("AWS_DEFAULT_REGION"),
                        access_key_id=parser["default"]["aws_access_key_id"],
                        secret_access_key=parser["default"]["aws_secret_access_key"],
                        session_token=parser["default"]["aws_session_token"])
    assert minted.access_key_id != b.access_key
    store = open_store(b.uri(), Settings(home=tmp_path, s3=minted))
    b.s3_client().put_object(Bucket=b.name, Key="data/train/x", Body=b"input")
    assert store.read_bytes(b.uri("data/train/x")) == b"input"
    store.write_bytes(b.uri(f"models/{h.ns}/mnist-001/output/model.tar.gz"), b"model")
    store.write_bytes(b.uri("ckpt/mnist-001/epoch-1.pt"), b"ckpt")
    for key in ("models/other-ns/mnist-001/output/model.tar.gz", f"models/{h.ns}/other/output/model.tar.gz",
                "ckpt/other/epoch-1.pt", "data/train/x"):
        _denied(lambda key=key: store.write_bytes(b.uri(key), b"overwritten"))


def test_without_sts_the_pods_fall_back_to_the_namespaces_secret(tenancy_harness: Any) -> None:
    """Temporary credentials as the namespace's Secret: MinIO refuses them
    AssumeRole, so the controller detects that and hands pods the shared Secret."""
    from kubernetes import client

    from tests.infra.waiting import wait_until

    h = tenancy_harness
    b = h.bucket
    temp = assume_role(_parent(b), session_policy([], [b.uri(f"jobs/{h.ns}/")]), 900, "tf-ns")
    _namespace_secret(h, {"AWS_ACCESS_KEY_ID": temp.access_key_id, "AWS_SECRET_ACCESS_KEY": temp.secret_access_key,
                          "AWS_SESSION_TOKEN": temp.session_token, "AWS_ENDPOINT_URL": b.endpoint})
    h.start()
    h.submit("plain")
    wait_until(lambda: h.jobs("plain") == ["plain-a1"], timeout=30, what="Job plain-a1")
    pod = h.job("plain-a1").spec.template.spec
    assert [s.env_from[0].secret_ref.name for s in pod.init_containers] == [h.settings.object_store_secret] * 2
    assert not [v for v in pod.volumes if v.secret]
    with pytest.raises(client.ApiException) as caught:
        client.CoreV1Api(h.api).read_namespaced_secret("plain-tf-storage", h.ns)
    assert caught.value.status == 404


def test_a_spec_aimed_at_another_jobs_tree_fails_terminally_naming_the_field(tenancy_harness: Any) -> None:
    h = tenancy_harness
    h.start()
    default = h.settings.default_output
    h.submit("thief", checkpoints={"uri": f"{default}{h.ns}/victim/output/"})
    status = h.wait_phase("thief", "Failed")["status"]
    assert "spec.checkpoints.uri" in status["failureReason"] and "other jobs" in status["failureReason"]
    assert h.jobs("thief") == []  # nothing ran
    h.submit("alias", output={"uri": f"{default}other-namespace/"})
    assert "spec.output.uri" in h.wait_phase("alias", "Failed")["status"]["failureReason"]


def test_the_controller_does_not_write_with_its_own_credentials_where_the_spec_points(
        tenancy_harness: Any) -> None:
    """The controller's own credentials can write the whole bucket; the spec
    points the job's output (where logs are archived and metrics folded) at a
    prefix the namespace's credentials may not write. Nothing is written
    there; the same job under the default root is archived as before."""
    from kubernetes import client

    from trainforge_controller.main import Controller

    h = tenancy_harness
    b = h.bucket
    # The tenant's credentials: only the controller's default root of its namespace.
    temp = assume_role(_parent(b), session_policy([], [b.uri(f"jobs/{h.ns}/")]), 900, "tf-tenant")
    _namespace_secret(h, {"AWS_ACCESS_KEY_ID": temp.access_key_id, "AWS_SECRET_ACCESS_KEY": temp.secret_access_key,
                          "AWS_SESSION_TOKEN": temp.session_token, "AWS_ENDPOINT_URL": b.endpoint})
    reads: list[str] = []

    def read_log(pod: dict[str, Any], container: str) -> str:
        reads.append(pod["metadata"]["name"])
        return "epoch 1 loss=0.5\n"

    stop = threading.Event()
    controller = Controller(h.kube.api_client(), h.settings, namespace=h.ns, watch_seconds=2,
                            store_opener=lambda uri: open_store(uri, h.store_settings), read_log=read_log)
    thread = threading.Thread(target=controller.run, args=(stop,), daemon=True)
    thread.start()
    try:
        victim = b.uri("victim/")
        h.submit("hostile", output={"uri": victim}, metrics=[{"name": "loss", "regex": r"loss=([0-9.]+)"}])
        h.submit("honest", metrics=[{"name": "loss", "regex": r"loss=([0-9.]+)"}])
        h.wait_phase("hostile", "Completed")
        honest = h.wait_phase("honest", "Completed")["status"]
        assert any(name.startswith("honest-a1-") for name in reads), reads
    finally:
        stop.set()
        thread.join(timeout=10)
    keys = [o["Key"] for o in b.s3_client().list_objects_v2(Bucket=b.name).get("Contents", [])]
    assert not [k for k in keys if k.startswith("victim/")], keys
    honest_art = ArtifactURIs.for_job(h.settings.default_output, h.ns, "honest")
    assert honest_art.log("algo-1", 1).split(f"{b.name}/", 1)[1] in keys
    assert honest["finalMetrics"] == {"loss": 0.5}
    assert client  # imported for the fixture's API types


def test_the_sdks_kubernetes_backend_refuses_before_creating_anything(tmp_path: Path) -> None:
    from kubernetes import client

    from trainforge.backends.kubernetes import KubernetesBackend

    api = client.ApiClient(client.Configuration(host="http://127.0.0.1:9"))  # nothing listens: no call is made
    backend = KubernetesBackend(Settings(home=tmp_path), namespace="team-a", api_client=api, output=DEFAULT)
    with pytest.raises(SpecError) as caught:
        backend.submit(tj("thief", "default", output={"uri": "s3://trainforge/jobs/team-b/"}))
    assert [i.path for i in caught.value.issues] == ["spec.output.uri"]
    assert "team-a/thief" in str(caught.value)


def test_the_stager_runs_in_and_out_on_the_jobs_minted_credentials_file(minio_bucket: Any, tmp_path: Path) -> None:
    """The pod's view: the credentials file the controller mounts, endpoint and
    region, no shared keys. Stage-in, checkpoint restore and stage-out work; a
    stager told it is another job (what a tampered pod spec would say) is
    refused by the store: the credentials, not the pod spec, are the guard."""
    import sys

    from tests.integration.test_stage import files, job_json, keys, put, stage, trained
    from trainforge_controller.credentials import job_policy

    b = minio_bucket
    for key in ("part-0.csv", "part-1.csv"):
        put(b, f"data/train/{key}", b"rows\n")
    put(b, "data/vocab/words.txt", b"alpha\n")
    put(b, "ckpt/stage-001/epoch-1.pt", b"weights-1")
    put(b, "models/team-a/victim/output/model.tar.gz", b"victim")
    text = job_json(b, count=1)
    job = TrainingJob.model_validate(json.loads(text))
    creds = assume_role(_parent(b), job_policy(job, b.uri("jobs/")), 900, "tf-team-a-stage-001")
    mounted = tmp_path / "credentials"
    mounted.write_text(creds.credentials_file())
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env = {**keep, "TRAINFORGE_JOB": text, "PYTHONUNBUFFERED": "1", "JOB_COMPLETION_INDEX": "0",
           "PYTHONPATH": os.pathsep.join(sys.path), "AWS_SHARED_CREDENTIALS_FILE": str(mounted),
           "AWS_ENDPOINT_URL": b.endpoint, "AWS_DEFAULT_REGION": b.region}

    host = tmp_path / "host"
    result = stage("in", host, env)
    assert result.returncode == 0, result.stderr
    assert set(files(host / "input" / "data" / "train")) == {"part-0.csv", "part-1.csv"}
    assert files(host / "checkpoints") == {"epoch-1.pt": b"weights-1"}

    out = tmp_path / "out"
    trained(out)
    result = stage("out", out, env)
    assert result.returncode == 0, result.stderr
    assert "models/team-a/stage-001/output/model.tar.gz" in keys(b, "models/")
    assert "ckpt/stage-001/epoch-2.pt" in keys(b, "ckpt/")

    hostile = stage("out", out, {**env, "TRAINFORGE_JOB": text.replace('"stage-001"', '"victim"')})
    assert hostile.returncode != 0 and "AccessDenied" in hostile.stderr
    assert b.s3_client().get_object(Bucket=b.name, Key="models/team-a/victim/output/model.tar.gz")["Body"].read() \
        == b"victim"


def test_credentials_are_refreshed_in_place_and_a_users_secret_is_never_clobbered(
        kube_api: Any, kube_namespace: str, minio_bucket: Any, trainforge_crd: Any, tmp_path: Path) -> None:
    from datetime import datetime, timedelta, timezone

    from kubernetes import client

    from trainforge_controller.credentials import JobCredentials
    from trainforge_controller.settings import ControllerSettings

    b, ns = minio_bucket, kube_namespace
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_secret(ns, {"metadata": {"name": "trainforge-object-store"}, "stringData": {
        k: v for k, v in b.env().items() if k != "AWS_ENDPOINT_URL_S3"}})
    settings = ControllerSettings(default_output=b.uri("jobs/"), sts_duration_seconds=900)
    now = [datetime.now(timezone.utc)]
    creds = JobCredentials(kube_api, settings, own_store=lambda uri: open_store(uri), clock=lambda: now[0])
    custom = client.CustomObjectsApi(kube_api)

    def create(name: str) -> str:  # real owners, or the garbage collector takes their Secrets
        body = {"apiVersion": "trainforge.dev/v1alpha1", "kind": "TrainingJob",
                "metadata": {"name": name}, "spec": {"image": "img:1"}}
        return custom.create_namespaced_custom_object("trainforge.dev", "v1alpha1", ns, "trainingjobs",
                                                      body)["metadata"]["uid"]

    job = tj("long", ns)
    uid = create("long")

    assert creds.ensure(job, uid) == "long-tf-storage"
    first = core.read_namespaced_secret("long-tf-storage", ns)
    creds.refresh(job, uid, pods_use_it=True)  # early in its life: nothing to do
    assert core.read_namespaced_secret("long-tf-storage", ns).data == first.data
    now[0] += timedelta(seconds=500)  # more than half of 900 s gone
    creds.refresh(job, uid, pods_use_it=True)
    second = core.read_namespaced_secret("long-tf-storage", ns)
    assert second.data["credentials"] != first.data["credentials"]
    assert second.metadata.annotations["trainforge.dev/credentials-expire"] >= \
        first.metadata.annotations["trainforge.dev/credentials-expire"]  # the store's clock, not the test's
    assert second.metadata.owner_references[0].uid == uid

    # A restarted controller does not know when they expire: it mints at once.
    restarted = JobCredentials(kube_api, settings, own_store=lambda uri: open_store(uri), clock=lambda: now[0])
    restarted.refresh(job, uid, pods_use_it=True)
    assert core.read_namespaced_secret("long-tf-storage", ns).data["credentials"] != second.data["credentials"]

    # A Secret of that name the job does not own (a user's, or another job's) is left alone.
    core.create_namespaced_secret(ns, {"metadata": {"name": "mine-tf-storage"}, "stringData": {"keep": "me"}})
    assert creds.ensure(tj("mine", ns), "6a1f7c1e-0000-4000-8000-000000000002") is None
    assert _decode(core.read_namespaced_secret("mine-tf-storage", ns)) == {"keep": "me"}
    core.create_namespaced_secret(ns, {"metadata": {"name": "other-tf-storage", "ownerReferences": [{
        "apiVersion": "trainforge.dev/v1alpha1", "kind": "TrainingJob", "name": "other",
        "uid": create("other")}]}, "stringData": {"keep": "me too"}})
    # A job of that name recreated (a new uid) while the old one's Secret is still there.
    assert creds.ensure(tj("other", ns), "6a1f7c1e-0000-4000-8000-000000000003") is None
    assert _decode(core.read_namespaced_secret("other-tf-storage", ns)) == {"keep": "me too"}


def test_two_mnist_001_jobs_in_two_namespaces_stage_out_side_by_side(minio_bucket: Any, tmp_path: Path) -> None:
    """The stager (what pods run) puts both jobs' model, output and metrics
    under their own namespace: neither overwrites the other."""
    from tests.integration.test_stage import job_json, keys, members, get, stage, stager_env, trained

    b = minio_bucket
    for namespace in ("team-a", "team-b"):
        text = job_json(b, name="mnist-001", count=1).replace('"namespace": "team-a"', f'"namespace": "{namespace}"')
        root = tmp_path / namespace
        trained(root)
        (root / "model" / "model.pt").write_bytes(f"weights of {namespace}".encode())
        result = stage("out", root, stager_env(b, text, 0))
        assert result.returncode == 0, result.stderr
    found = keys(b, "models/")
    for namespace in ("team-a", "team-b"):
        prefix = f"models/{namespace}/mnist-001/"
        assert {prefix + "output/model.tar.gz", prefix + "output/output.tar.gz",
                prefix + "metrics/metrics.jsonl"} <= set(found)
        assert members(get(b, prefix + "output/model.tar.gz"))["model.pt"] == f"weights of {namespace}".encode()
