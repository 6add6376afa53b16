"""The CRD is generated from the models, committed, and enforced by the apiserver."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from trainforge_controller import crds


@pytest.mark.parametrize("kind", ["TrainingJob", "TuningJob"])
def test_committed_crds_are_in_sync_with_the_models(kind: str) -> None:
    assert crds.CRD_FILES[kind].read_text() == crds.render(kind), (
        f"{crds.CRD_FILES[kind].name} is stale: run PYTHONPATH=sdk:controller python -m trainforge_controller.crds")
    assert crds.main(["--check"]) == 0


def test_tuning_crd_shape() -> None:
    crd = yaml.safe_load(crds.CRD_FILES["TuningJob"].read_text())
    version = crd["spec"]["versions"][0]
    assert crd["metadata"]["name"] == "tuningjobs.trainforge.dev"
    assert crd["spec"]["names"]["shortNames"] == ["tuning"]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Done"] == ".status.trials.completed" and columns["Best"] == ".status.bestTrial.objective"
    assert "$ref" not in json.dumps(crd)
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert sorted(spec["required"]) == ["objective", "parameters", "trainingJobTemplate"]
    assert spec["properties"]["strategy"]["properties"]["type"]["enum"] == ["Random", "Grid", "Bayesian", "Hyperband"]


def test_crd_shape() -> None:
    crd = yaml.safe_load(crds.CRD_FILE.read_text())
    version = crd["spec"]["versions"][0]
    assert crd["spec"]["names"]["shortNames"] == ["tj"]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]][:2] == ["Phase", "Instance"]
    assert "$ref" not in json.dumps(crd)
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["required"] == ["image"]
    assert spec["properties"]["inputs"]["items"]["properties"]["distribution"]["enum"] == [
        "FullyReplicated", "ShardedByS3Key"]


def _cr(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "trainforge.dev/v1alpha1", "kind": "TrainingJob",
            "metadata": {"name": name}, "spec": {"image": "example/mnist:1", **spec}}


def test_apiserver_accepts_a_valid_job(kube: Any, trainforge_crd: Any, kube_namespace: str) -> None:
    job = _cr("valid", instance={"type": "gpu-1x", "count": 2},
              hyperparameters={"lr": "0.01"},
              inputs=[{"channel": "train", "uri": "s3://datasets/mnist/train/"}],
              output={"uri": "s3://models/mnist/"}, retry={"maxAttempts": 3})
    kube.kubectl("apply", "-n", kube_namespace, "-f", "-", input=json.dumps(job))
    got = json.loads(kube.kubectl("get", "tj", "valid", "-n", kube_namespace, "-o", "json").stdout)
    # Defaults from the models are applied by the apiserver.
    assert got["spec"]["suspend"] is False
    assert got["spec"]["inputs"][0]["distribution"] == "FullyReplicated"


@pytest.mark.parametrize(("spec", "expected"), [
    ({"inputs": [{"channel": "train", "uri": "s3://d/x", "distribution": "Sometimes"}]},
     'spec.inputs[0].distribution: Unsupported value: "Sometimes"'),
    ({"inputs": [{"channel": "train", "uri": "http://not-a-store/x"}]}, "spec.inputs[0].uri"),
    ({"instance": {"type": "gpu-1x", "count": 0}}, "spec.instance.count"),
    ({"retry": {"maxAttempts": 0}}, "spec.retry.maxAttempts"),
    ({"output": {"uri": "s3://same/p/"}, "inputs": [{"channel": "a", "uri": "s3://same/p/"}]},
     "spec.output.uri must differ"),
    ({"image": ""}, "spec.image"),
])
def test_apiserver_rejects_an_invalid_job(
    kube: Any, trainforge_crd: Any, kube_namespace: str, spec: dict[str, Any], expected: str,
) -> None:
    result = kube.kubectl("apply", "-n", kube_namespace, "-f", "-",
                          input=json.dumps(_cr("invalid", **spec)), check=False)
    assert result.returncode != 0
    assert expected in result.stderr, result.stderr


def test_apiserver_rejects_a_job_without_spec_image(
    kube: Any, trainforge_crd: Any, kube_namespace: str,
) -> None:
    body = _cr("noimage")
    del body["spec"]["image"]
    body["spec"]["instance"] = {"type": "gpu-1x"}
    result = kube.kubectl("apply", "-n", kube_namespace, "-f", "-", input=json.dumps(body),
                          check=False)
    assert result.returncode != 0 and "spec.image: Required value" in result.stderr, result.stderr
