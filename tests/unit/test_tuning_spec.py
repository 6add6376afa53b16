"""TuningJob spec validation: every rule a person can break, with its field path."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from trainforge.errors import SpecError
from trainforge.spec import Scale, StrategyType, parse_tuning_job, parse_tuning_text

BASE: dict[str, Any] = {
    "apiVersion": "trainforge.dev/v1alpha1", "kind": "TuningJob",
    "metadata": {"name": "digits-tune"},
    "spec": {
        "trainingJobTemplate": {
            "image": "containers/examples/digits-pytorch",
            "hyperparameters": {"epochs": "5"},
            "metrics": [{"name": "validation:accuracy", "regex": "val_acc=([0-9.]+)"}],
        },
        "objective": {"metric": "validation:accuracy", "type": "Maximize"},
        "parameters": [
            {"name": "lr", "type": "Continuous", "min": 0.001, "max": 0.5, "scale": "Log"},
            {"name": "batch_size", "type": "Categorical", "values": [32, 64, 128]},
            {"name": "hidden", "type": "Integer", "min": 16, "max": 128, "step": 16},
        ],
        "strategy": {"type": "Bayesian", "seed": 7},
        "limits": {"maxTrials": 12, "maxParallelTrials": 3},
    },
}


def doc(**changes: Any) -> dict[str, Any]:
    """BASE with spec fields replaced (a value of None deletes the field)."""
    out = copy.deepcopy(BASE)
    for key, value in changes.items():
        if value is None:
            out["spec"].pop(key, None)
        else:
            out["spec"][key] = value
    return out


def issues(document: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_tuning_job(document)
    return [str(issue) for issue in info.value.issues]


def test_a_good_document_loads_with_defaults_and_wire_strings() -> None:
    tuning = parse_tuning_job(BASE)
    assert tuning.name == "digits-tune"
    assert tuning.spec.parameters[1].values == ["32", "64", "128"]
    assert tuning.spec.parameters[0].scale == Scale.LOG
    assert tuning.spec.strategy.type == StrategyType.BAYESIAN
    assert tuning.spec.limits.max_failed_trials == 3
    assert tuning.spec.early_stopping.type.value == "Off"
    again = parse_tuning_job(tuning.to_dict())
    assert again == tuning


def test_yaml_loads_too() -> None:
    text = """
metadata: {name: t}
spec:
  trainingJobTemplate:
    image: x
    metrics: [{name: loss, regex: 'loss=([0-9.]+)'}]
  objective: {metric: loss, type: Minimize}
  parameters:
    - {name: momentum, type: Continuous, min: 0.9, max: 0.999, scale: ReverseLog}
"""
    tuning = parse_tuning_text(text)
    assert tuning.spec.parameters[0].scale == Scale.REVERSE_LOG


@pytest.mark.parametrize("parameters, expected", [
    ([{"name": "lr", "type": "Continuous", "min": 0.5, "max": 0.5}],
     "spec.parameters[0]: min (0.5) must be less than max (0.5)"),
    ([{"name": "lr", "type": "Continuous", "min": 0, "max": 1, "scale": "Log"}],
     "spec.parameters[0]: a Log scale needs min > 0, got 0"),
    ([{"name": "bs", "type": "Categorical", "values": []}],
     "spec.parameters[0]: a Categorical parameter needs at least one value in values"),
    ([{"name": "bs", "type": "Categorical", "values": ["1", "1"]}],
     "spec.parameters[0]: values must not repeat"),
    ([{"name": "bs", "type": "Categorical", "min": 1, "values": ["1"]}],
     "spec.parameters[0]: a Categorical parameter takes values, not min/max/step"),
    ([{"name": "n", "type": "Integer", "min": 1.5, "max": 4}],
     "spec.parameters[0]: an Integer parameter needs whole-number min and max"),
    ([{"name": "n", "type": "Integer", "min": 1}],
     "spec.parameters[0]: an Integer parameter needs both min and max"),
    ([{"name": "m", "type": "Continuous", "min": 0.5, "max": 1.0, "scale": "ReverseLog"}],
     "spec.parameters[0]: a ReverseLog scale needs 0 <= min and max < 1"),
    ([{"name": "lr", "type": "Continuous", "min": 0.1, "max": 1, "step": 2}],
     "spec.parameters[0]: step applies to Integer parameters only"),
    ([{"name": "lr", "type": "Continuous", "min": 0.1, "max": float("inf")}],
     "spec.parameters[0]: min and max must be finite numbers"),
    ([{"name": "lr", "type": "Gaussian", "min": 0.1, "max": 1}],
     "spec.parameters[0].type: Input should be 'Continuous', 'Integer' or 'Categorical' (got 'Gaussian')"),
    ([], "spec.parameters: List should have at least 1 item after validation, not 0"),
])
def test_range_rules(parameters: list[dict[str, Any]], expected: str) -> None:
    assert expected in issues(doc(parameters=parameters))


def test_cross_field_rules_name_their_paths() -> None:
    bad = doc(
        parameters=[
            {"name": "epochs", "type": "Integer", "min": 1, "max": 9},
            {"name": "lr", "type": "Continuous", "min": 0.01, "max": 0.1},
            {"name": "lr", "type": "Categorical", "values": ["0.1"]},
        ],
        objective={"metric": "val_loss", "type": "Minimize"},
        strategy={"type": "Grid"},
    )
    assert issues(bad) == [
        "spec.parameters[0].name: 'epochs' is tuned and also set in trainingJobTemplate.hyperparameters; remove one",
        "spec.parameters[2].name: 'lr' is tuned twice",
        "spec.objective.metric: 'val_loss' is not a metric of trainingJobTemplate.metrics "
        "(defined: validation:accuracy)",
        "spec.parameters[1].type: a Grid strategy needs Integer or Categorical parameters, not a Continuous range",
    ]


def test_hyperband_rules() -> None:
    assert "spec.earlyStopping.type: Hyperband stops trials itself; set earlyStopping.type to Off" in issues(
        doc(strategy={"type": "Hyperband"}, earlyStopping={"type": "Median"}))
    assert any("minResource (9) must be less than maxResource (9)" in i for i in issues(
        doc(strategy={"type": "Hyperband", "hyperband": {"minResource": 9, "maxResource": 9}})))
    assert any("hyperband settings apply to type Hyperband only" in i for i in issues(
        doc(strategy={"type": "Random", "hyperband": {"maxResource": 9}})))


def test_huge_grid_is_refused() -> None:
    params = [{"name": f"p{i}", "type": "Integer", "min": 0, "max": 99} for i in range(3)]
    assert any("the grid has 1000000 points" in i for i in issues(doc(parameters=params, strategy={"type": "Grid"})))


def test_unknown_fields_and_template_errors_have_paths() -> None:
    bad = doc(limits={"maxTrials": 0, "maxParalel": 2})
    bad["spec"]["trainingJobTemplate"]["inputs"] = [{"channel": "train", "uri": "http://x"}]
    found = issues(bad)
    assert any(i.startswith("spec.trainingJobTemplate.inputs[0].uri:") for i in found)
    assert any(i.startswith("spec.limits.maxTrials:") for i in found)
    assert any(i.startswith("spec.limits.maxParalel: unknown field") for i in found)
