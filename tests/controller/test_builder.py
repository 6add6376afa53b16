"""builder: pure TrainingJob -> Job/Service, as tables (no API)."""

from __future__ import annotations

from typing import Any

import pytest

from trainforge.instances import DEFAULT_CATALOG
from trainforge.spec import TrainingJob
from trainforge_controller.builder import build_job, build_service, needs_service
from trainforge_controller.settings import ControllerSettings

S = ControllerSettings(stager_image="stager:1", object_store_secret="s3-creds")


def _job(labels: dict[str, str] | None = None, **spec: Any) -> TrainingJob:
    return TrainingJob.model_validate({"metadata": {"name": "mn", "namespace": "team-a",
                                                    "labels": labels or {}},
                                       "spec": {"image": "img:1", **spec}})


def _env(body: dict[str, Any]) -> dict[str, Any]:
    trainer = body["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in trainer["env"]}


@pytest.mark.parametrize(("instance", "count", "gpus", "selector", "tolerated"), [
    ("gpu-1x", 1, "1", {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}, True),
    ("gpu-8x", 4, "8", {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}, True),
    ("cpu-small", 1, None, None, False),
])
def test_resources_placement_and_shape(instance: str, count: int, gpus: str | None,
                                       selector: dict[str, str] | None, tolerated: bool) -> None:
    job = _job(instance={"type": instance, "count": count})
    body = build_job(job, "uid-1", 2, DEFAULT_CATALOG[instance], S, 3600)
    spec = body["spec"]
    pod = spec["template"]["spec"]
    limits = pod["containers"][0]["resources"]["limits"]
    assert body["metadata"]["name"] == "mn-a2"
    assert (spec["parallelism"], spec["completions"], spec["completionMode"], spec["backoffLimit"],
            spec["activeDeadlineSeconds"]) == (count, count, "Indexed", 0, 3600)
    assert limits.get("nvidia.com/gpu") == gpus
    # an evicted or preempted pod fails the attempt by a rule that names it (status.decide resumes it)
    assert spec["podFailurePolicy"] == {"rules": [{"action": "FailJob", "onPodConditions": [
        {"type": "DisruptionTarget", "status": "True"}]}]}
    # stage-in runs alone: the trainer's CPU request, at no cost to the pod's; the sidecar keeps its own
    stage_in, sidecar = pod["initContainers"]
    assert stage_in["resources"]["requests"]["cpu"] == limits["cpu"] and "cpu" not in stage_in["resources"]["limits"]
    assert sidecar["resources"]["requests"]["cpu"] == "250m"
    assert pod.get("nodeSelector") == selector
    assert ("tolerations" in pod) is tolerated
    assert body["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert body["metadata"]["labels"]["trainforge.dev/attempt"] == "2"


@pytest.mark.parametrize(("count", "expected"), [
    (1, {"MASTER_ADDR": None, "SM_CURRENT_HOST": "algo-1"}),
    (3, {"MASTER_ADDR": "mn-a1-0.mn", "WORLD_SIZE": "3", "NODE_RANK": "$(TRAINFORGE_HOST_INDEX)",
         "SM_CURRENT_HOST": None, "SM_HOSTS": '["algo-1", "algo-2", "algo-3"]'}),
])
def test_contract_and_torchrun_env(count: int, expected: dict[str, str | None]) -> None:
    env = _env(build_job(_job(instance={"type": "gpu-8x", "count": count}, env={"LOG_LEVEL": "info"}),
                         "u", 1, DEFAULT_CATALOG["gpu-8x"], S, 10))
    for key, value in expected.items():
        assert env.get(key) == value, key
    assert env["LOG_LEVEL"] == "info" and env["SM_NUM_GPUS"] == "8"
    assert list(env)[0] == "TRAINFORGE_HOST_INDEX"  # defined before NODE_RANK refers to it


def test_stagers_volumes_and_failure_file() -> None:
    pod = build_job(_job(stopping={"gracePeriodSeconds": 45}), "u", 1, DEFAULT_CATALOG["gpu-1x"],
                    S, 10)["spec"]["template"]["spec"]
    stage_in, sidecar = pod["initContainers"]
    assert stage_in["command"][-1] == "in" and "restartPolicy" not in stage_in
    assert sidecar["command"][-1] == "sync" and sidecar["restartPolicy"] == "Always"
    assert stage_in["image"] == "stager:1"
    assert stage_in["envFrom"] == [{"secretRef": {"name": "s3-creds", "optional": True}}]
    assert pod["containers"][0]["terminationMessagePath"] == "/opt/ml/output/failure"
    assert pod["volumes"][1] == {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "50Gi"}}
    assert pod["terminationGracePeriodSeconds"] == 45 + S.stage_out_seconds
    assert pod["restartPolicy"] == "Never"
    assert "subdomain" not in pod  # one host: no Service to name it
    assert stage_in["env"] == sidecar["env"]  # the same job description for both stagers


def test_stagers_read_the_job_from_one_pod_annotation() -> None:
    job = _job(hyperparameters={"lr": "0.1"}, inputs=[{"channel": "train", "uri": "s3://data/train/"}])
    template = build_job(job, "u", 1, DEFAULT_CATALOG["gpu-1x"], S, 10)["spec"]["template"]
    for stager in template["spec"]["initContainers"]:
        ref = next(e for e in stager["env"] if e["name"] == "TRAINFORGE_JOB")["valueFrom"]["fieldRef"]
        assert ref["fieldPath"] == "metadata.annotations['trainforge.dev/job-spec']"
    described = TrainingJob.model_validate_json(template["metadata"]["annotations"]["trainforge.dev/job-spec"])
    assert described == job


def test_only_multi_host_jobs_get_a_service_and_a_subdomain() -> None:
    one, two = _job(), _job(instance={"type": "gpu-8x", "count": 2})
    assert not needs_service(one) and needs_service(two)
    pod = build_job(two, "u", 1, DEFAULT_CATALOG["gpu-8x"], S, 10)["spec"]["template"]["spec"]
    assert pod["subdomain"] == "mn"


@pytest.mark.parametrize(("labels", "suspend", "want_label", "want_suspend"), [
    ({}, False, None, False),
    ({"kueue.x-k8s.io/queue-name": "team-a"}, True, "team-a", True),
])
def test_kueue_label_and_suspend(labels: dict[str, str], suspend: bool, want_label: str | None,
                                 want_suspend: bool) -> None:
    body = build_job(_job(labels, suspend=suspend), "u", 1, DEFAULT_CATALOG["gpu-1x"], S, 10)
    assert body["spec"]["suspend"] is want_suspend
    assert body["spec"]["template"]["metadata"]["labels"].get("kueue.x-k8s.io/queue-name") == want_label


def test_service_is_headless_and_deterministic() -> None:
    a = build_service(_job(), "u", S)
    assert a == build_service(_job(), "u", S)
    assert a["metadata"]["name"] == "mn" and a["spec"]["clusterIP"] == "None"
    assert a["spec"]["selector"] == {"trainforge.dev/job-name": "mn"}


def test_same_inputs_same_job() -> None:
    args = (_job(instance={"type": "gpu-2x", "count": 2}), "u", 1, DEFAULT_CATALOG["gpu-2x"], S, 99)
    assert build_job(*args) == build_job(*args)


def test_every_container_is_unprivileged_and_the_pod_has_no_token() -> None:
    pod = build_job(_job(instance={"type": "gpu-8x", "count": 2}), "u", 1, DEFAULT_CATALOG["gpu-8x"], S,
                    10)["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                                      "fsGroup": 10001, "seccompProfile": {"type": "RuntimeDefault"}}
    containers = {c["name"]: c for c in pod["initContainers"] + pod["containers"]}
    assert set(containers) == {"stage-in", "stager", "trainer"}
    for name, container in containers.items():
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False, name
        assert context["capabilities"] == {"drop": ["ALL"]}, name
        assert "privileged" not in context and "runAsUser" not in context, name  # the pod's uid for all
        # Stagers: read-only root, a scratch /tmp; the trainer's image may write where it likes.
        assert context["readOnlyRootFilesystem"] is (name != "trainer"), name
    for name in ("stage-in", "stager"):
        assert {"name": "stager-tmp", "mountPath": "/tmp"} in containers[name]["volumeMounts"]
    assert {"name": "stager-tmp", "emptyDir": {}} in pod["volumes"]


def test_job_uid_comes_from_the_settings() -> None:
    settings = ControllerSettings.from_env({"TRAINFORGE_JOB_UID": "4242"})
    pod = build_job(_job(), "u", 1, DEFAULT_CATALOG["gpu-1x"], settings, 10)["spec"]["template"]["spec"]
    context = pod["securityContext"]
    assert (context["runAsUser"], context["runAsGroup"], context["fsGroup"]) == (4242, 4242, 4242)


def test_host_network_pods_claim_no_host_port() -> None:
    plain = build_job(_job(), "u", 1, DEFAULT_CATALOG["cpu-small"], S, 10)["spec"]["template"]["spec"]
    assert "hostNetwork" not in plain and plain["containers"][0]["ports"][0]["containerPort"] == 29500
    settings = ControllerSettings.from_env({"TRAINFORGE_HOST_NETWORK": "true"})
    pod = build_job(_job(), "u", 1, DEFAULT_CATALOG["cpu-small"], settings, 10)["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert "ports" not in pod["containers"][0]
    with pytest.raises(ValueError, match="expected true or false"):
        ControllerSettings.from_env({"TRAINFORGE_HOST_NETWORK": "maybe"})


def test_a_root_job_uid_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="TRAINFORGE_JOB_UID"):
        ControllerSettings.from_env({"TRAINFORGE_JOB_UID": "0"})


SMUGGLE = "$(AWS_SECRET_ACCESS_KEY)"


@pytest.mark.parametrize(("where", "spec", "variable"), [
    ("spec.env value", {"env": {"TOKEN": SMUGGLE}}, "TOKEN"),
    ("hyperparameter value", {"hyperparameters": {"lr": SMUGGLE}}, "SM_HP_LR"),
    ("hyperparameters as JSON", {"hyperparameters": {"lr": SMUGGLE}}, "SM_HPS"),
    ("training env JSON", {"hyperparameters": {"lr": SMUGGLE}}, "SM_TRAINING_ENV"),
    ("content type", {"inputs": [{"channel": "train", "uri": "s3://data/x/", "contentType": SMUGGLE}]},
     "SM_INPUT_DATA_CONFIG"),
    ("already escaped", {"env": {"TOKEN": "$$(HOME) and $PATH"}}, "TOKEN"),
])
def test_user_values_cannot_expand_other_variables(where: str, spec: dict[str, Any], variable: str) -> None:
    job = _job(**spec)
    trainer = build_job(job, "u", 1, DEFAULT_CATALOG["gpu-1x"], S, 10)["spec"]["template"]["spec"]["containers"][0]
    sent = next(e["value"] for e in trainer["env"] if e["name"] == variable)
    # Kubernetes reads "$$" as a literal "$": what the trainer sees is exactly what the user wrote.
    assert kubernetes_expand(sent, {"AWS_SECRET_ACCESS_KEY": "leaked", "HOME": "/root", "PATH": "/bin"}) \
        == _unescaped_value(job, variable), where
    assert "leaked" not in kubernetes_expand(sent, {"AWS_SECRET_ACCESS_KEY": "leaked"})


def test_stager_output_uri_is_literal_and_node_rank_still_expands() -> None:
    job = _job(instance={"type": "gpu-8x", "count": 2}, output={"uri": "s3://out/$(HOME)/"})
    pod = build_job(job, "u", 1, DEFAULT_CATALOG["gpu-8x"], S, 10)["spec"]["template"]["spec"]
    stager = {e["name"]: e.get("value") for e in pod["initContainers"][0]["env"]}
    assert kubernetes_expand(stager["TRAINFORGE_OUTPUT_URI"], {"HOME": "/x"}) == "s3://out/$(HOME)/"
    env = _env({"spec": {"template": {"spec": pod}}})
    assert env["NODE_RANK"] == "$(TRAINFORGE_HOST_INDEX)"  # ours, meant to expand


def _unescaped_value(job: TrainingJob, variable: str) -> str:
    from trainforge.contract import HostInfo, Layout, contract_env

    env = contract_env(job_name=job.name, layout=Layout(), hyperparameters=job.spec.hyperparameters,
                       inputs=job.spec.inputs, host=HostInfo("algo-1", ("algo-1",)),
                       instance=DEFAULT_CATALOG["gpu-1x"], extra=dict(job.spec.env))
    return env[variable]


def kubernetes_expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion (k8s.io/kubernetes third_party/forked/golang/expansion):
    "$$" is "$", "$(NAME)" a defined variable's value (an undefined one stays as
    written), any other "$" itself."""
    out, i = [], 0
    while i < len(value):
        if value[i] == "$" and i + 1 < len(value):
            nxt = value[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = value.find(")", i + 2)
                if end != -1:
                    name = value[i + 2:end]
                    out.append(env.get(name, value[i:end + 1]))
                    i = end + 1
                    continue
        out.append(value[i])
        i += 1
    return "".join(out)
