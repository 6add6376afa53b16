"""The TrainingJob spec: validation with field paths, generateName, loading
from files, the wire form, and the JSON Schema / CRD (structural) exports."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from trainforge.errors import SpecError
from trainforge.spec import (
    Phase,
    TrainingJob,
    field_path,
    json_schema,
    load_job,
    openapi_schema,
    parse_job,
    parse_text,
)
from trainforge.spec.schema import status_schema

# The example from DESIGN.md: every section filled in.
FULL: dict[str, Any] = {
    "apiVersion": "trainforge.dev/v1alpha1",
    "kind": "TrainingJob",
    "metadata": {"name": "mnist-001", "namespace": "team-a"},
    "spec": {
        "image": "registry.example.com/mnist:1.2",
        "instance": {"type": "gpu-1x", "count": 1},
        "hyperparameters": {"lr": "0.01", "epochs": "5", "batch_size": "64"},
        "inputs": [{"channel": "train", "uri": "s3://datasets/mnist/train/",
                    "distribution": "FullyReplicated", "mode": "File"}],
        "output": {"uri": "s3://models/mnist/"},
        "checkpoints": {"uri": "s3://ckpt/mnist-001/"},
        "metrics": [{"name": "val:acc", "regex": "val_acc=([0-9.eE+-]+)"}],
        "stopping": {"maxRuntimeSeconds": 7200},
        "retry": {"maxAttempts": 3},
        "env": {"LOG_LEVEL": "info"},
    },
}


def doc(**spec: Any) -> dict[str, Any]:
    """The FULL document with ``spec`` fields replaced."""
    out = copy.deepcopy(FULL)
    out["spec"].update(spec)
    return out


def issues(data: Any) -> dict[str, str]:
    """path -> message of every problem parse_job reports."""
    with pytest.raises(SpecError) as info:
        parse_job(data)
    return {i.path: i.message for i in info.value.issues}


# --- valid documents -----------------------------------------------------------

def test_full_example_parses_with_typed_fields() -> None:
    job = parse_job(FULL)
    assert job.name == "mnist-001" and job.metadata.namespace == "team-a"
    assert job.spec.instance.type == "gpu-1x"
    assert job.spec.inputs[0].channel == "train"
    assert job.spec.stopping.max_runtime_seconds == 7200
    assert job.spec.stopping.grace_period_seconds == 30  # default
    assert job.spec.retry.max_attempts == 3
    assert job.status is None


def test_minimal_document_gets_defaults() -> None:
    job = parse_job({"metadata": {"name": "a1"}, "spec": {"image": "img"}})
    assert job.api_version == "trainforge.dev/v1alpha1" and job.kind == "TrainingJob"
    assert job.metadata.namespace == "default"
    assert (job.spec.instance.type, job.spec.instance.count) == ("local", 1)
    assert job.spec.inputs == [] and job.spec.output is None and job.spec.checkpoints is None
    assert job.spec.retry.max_attempts == 1 and job.spec.suspend is False


def test_wire_form_round_trips_in_camel_case() -> None:
    wire = parse_job(FULL).to_dict()
    assert wire["spec"]["stopping"]["maxRuntimeSeconds"] == 7200
    assert wire["spec"]["retry"] == {"maxAttempts": 3}
    assert "status" not in wire
    assert "max_runtime_seconds" not in json.dumps(wire)
    assert parse_job(wire) == parse_job(FULL)


def test_snake_case_is_accepted_too() -> None:
    job = parse_job({"api_version": "trainforge.dev/v1alpha1", "metadata": {"name": "a1"},
                     "spec": {"image": "img", "stopping": {"max_runtime_seconds": 60},
                              "retry": {"max_attempts": 2}}})
    assert job.spec.stopping.max_runtime_seconds == 60 and job.spec.retry.max_attempts == 2


@pytest.mark.parametrize(("given", "wire"), [
    (1, "1"), (0.5, "0.5"), (1e-05, "1e-05"), (True, "true"), (False, "false"), ("adam", "adam"),
])
def test_hyperparameters_and_env_travel_as_strings(given: Any, wire: str) -> None:
    job = parse_job(doc(hyperparameters={"x": given}, env={"X": given}))
    assert job.spec.hyperparameters == {"x": wire}
    assert job.spec.env == {"X": wire}


def test_output_may_sit_beside_an_input() -> None:
    job = parse_job(doc(inputs=[{"channel": "train", "uri": "s3://data/a/"}], output={"uri": "s3://data/b/"}))
    assert job.spec.output is not None and job.spec.output.uri == "s3://data/b/"


# --- invalid documents: each problem names its field path ------------------------

INVALID = [
    # (document, path, words the message must contain)
    ({"metadata": {"name": "Bad_Name"}, "spec": {"image": "x"}}, "metadata.name", "DNS-1123"),
    ({"metadata": {"name": "a" * 64}, "spec": {"image": "x"}}, "metadata.name", "at most 63"),
    ({"metadata": {}, "spec": {"image": "x"}}, "metadata.name", "required field is missing"),
    ({"metadata": {"name": "a1"}, "spec": {}}, "spec.image", "required field is missing"),
    ({"metadata": {"name": "a1"}}, "spec", "required field is missing"),
    ({"apiVersion": "v2", "metadata": {"name": "a1"}, "spec": {"image": "x"}}, "apiVersion", "trainforge.dev/v1alpha1"),
    ({"kind": "Job", "metadata": {"name": "a1"}, "spec": {"image": "x"}}, "kind", "TrainingJob"),
    (doc(image=""), "spec.image", "must not be empty"),
    (doc(instance={"type": "gpu-1x", "count": 0}), "spec.instance.count", "greater than or equal to 1"),
    (doc(instance="gpu-1x"), "spec.instance", "valid dictionary"),
    (doc(hyperparameters={"1lr": "0.1"}), "spec.hyperparameters.1lr (key)", "hyperparameter name"),
    (doc(hyperparameters={"lr": [0.1]}), "spec.hyperparameters.lr", "valid string"),
    (doc(env={"LOG-LEVEL": "x"}), "spec.env.LOG-LEVEL (key)", "environment variable name"),
    (doc(inputs=[{"channel": "tr ain", "uri": "s3://data/train/"}]), "spec.inputs[0].channel", "channel name"),
    (doc(inputs=[{"channel": "train"}]), "spec.inputs[0].uri", "required field is missing"),
    (doc(inputs=[{"channel": "train", "uri": "http://data/train/"}]), "spec.inputs[0].uri", "s3://, local:// or file://"),
    (doc(inputs=[{"channel": "train", "uri": "s3://Data/train/"}]), "spec.inputs[0].uri", "not a valid bucket name"),
    (doc(inputs=[{"channel": "train", "uri": "s3://data/../x"}]), "spec.inputs[0].uri", "'..'"),
    (doc(inputs=[{"channel": "train", "uri": "s3://data/x", "distribution": "Random"}]),
     "spec.inputs[0].distribution", "'FullyReplicated' or 'ShardedByS3Key'"),
    (doc(inputs=[{"channel": "train", "uri": "s3://data/x", "mode": "Pipe"}]), "spec.inputs[0].mode", "'File' or 'FastFile'"),
    (doc(inputs=[{"channel": "a", "uri": "s3://data/a"}, {"channel": "a", "uri": "s3://data/b"}]),
     "spec.inputs", "channel 'a' appears more than once"),
    (doc(output={"uri": "file://relative/path"}), "spec.output.uri", "file:///path"),
    (doc(output={"uri": "s3://datasets/mnist/train"}), "spec.output", "spec.inputs[0].uri"),
    (doc(checkpoints={"uri": "s3://ckpt/x/", "localPath": "relative"}), "spec.checkpoints.localPath", "string matching"),
    (doc(metrics=[{"name": "acc", "regex": "acc=(\\d)(\\d)"}]), "spec.metrics[0].regex", "exactly one capture group, found 2"),
    (doc(metrics=[{"name": "acc", "regex": "acc=("}]), "spec.metrics[0].regex", "RE2 cannot compile it (missing ): acc=()"),
    (doc(metrics=[{"name": "acc", "regex": "(?<=acc=)([0-9.]+)"}]), "spec.metrics[0].regex",
     "RE2 cannot compile it (invalid perl operator: (?<=); metric regexes run in linear time, so backreferences and lookarounds"),
    (doc(metrics=[{"name": "acc", "regex": "(a+)\\1"}]), "spec.metrics[0].regex", "invalid escape sequence: \\1"),
    (doc(metrics=[{"name": "acc", "regex": "(x)" + "y" * 1100}]), "spec.metrics[0].regex", "at most 1024 characters"),
    (doc(metrics=[{"name": f"m{i}", "regex": "(x)"} for i in range(41)]), "spec.metrics", "at most 40 items"),
    (doc(metrics=[{"name": "has space", "regex": "(x)"}]), "spec.metrics[0].name", "string matching"),
    (doc(metrics=[{"name": "a", "regex": "(x)"}, {"name": "a", "regex": "(y)"}]), "spec.metrics", "repeated: a"),
    (doc(stopping={"maxRuntimeSeconds": 0}), "spec.stopping.maxRuntimeSeconds", "greater than or equal to 1"),
    (doc(stopping={"gracePeriodSeconds": -1}), "spec.stopping.gracePeriodSeconds", "greater than or equal to 0"),
    (doc(retry={"maxAttempts": 101}), "spec.retry.maxAttempts", "less than or equal to 100"),
    (doc(suspend="maybe"), "spec.suspend", "boolean"),
    (doc(maxRuntimeSeconds=10), "spec.maxRuntimeSeconds", "unknown field"),
    (doc(stopping={"max_runtime": 10}), "spec.stopping.max_runtime", "unknown field"),
]


@pytest.mark.parametrize(("data", "path", "words"), INVALID,
                         ids=[f"{i}-{case[1]}" for i, case in enumerate(INVALID)])
def test_invalid_field_is_reported_at_its_path(data: dict[str, Any], path: str, words: str) -> None:
    found = issues(data)
    assert path in found, f"no issue at {path}: {found}"
    assert words in found[path]


def test_every_problem_is_listed_at_once_with_its_path() -> None:
    data = {
        "metadata": {"name": "Bad_Name"},
        "spec": {
            "image": "", "instance": {"count": 0},
            "hyperparameters": {"1bad": "1"},
            "inputs": [{"channel": "ok", "uri": "ftp://x/y"}],
            "metrics": [{"name": "m", "regex": "no group"}],
            "stopping": {"maxRuntimeSeconds": 0},
            "bogus": 1,
        },
    }
    with pytest.raises(SpecError) as info:
        parse_job(data, source="job.json")
    paths = [i.path for i in info.value.issues]
    assert paths == [
        "metadata.name", "spec.image", "spec.instance.count", "spec.hyperparameters.1bad (key)",
        "spec.inputs[0].uri", "spec.metrics[0].regex", "spec.stopping.maxRuntimeSeconds", "spec.bogus",
    ]
    text = str(info.value)
    assert text.startswith("job.json: invalid job spec (8 problems):")
    for issue in info.value.issues:
        assert f"  - {issue.path}: " in text
    assert "(got 'Bad_Name')" in text  # the offending value is quoted


def test_error_is_not_chained_to_pydantic() -> None:
    with pytest.raises(SpecError) as info:
        parse_job({"metadata": {"name": "a1"}, "spec": {}})
    assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.mark.parametrize("data", [[], "text", 3, None])
def test_non_object_documents_are_refused(data: Any) -> None:
    with pytest.raises(SpecError, match="expected a JSON/YAML object"):
        parse_job(data)


@pytest.mark.parametrize(("loc", "path"), [
    (("spec", "inputs", 0, "uri"), "spec.inputs[0].uri"),
    (("spec", "hyperparameters", "lr", "[key]"), "spec.hyperparameters.lr (key)"),
    (("spec", "image", "function-after[_check(), str]"), "spec.image"),
    (("metrics", 2), "metrics[2]"),
    ((), ""),
])
def test_field_path(loc: tuple[Any, ...], path: str) -> None:
    assert field_path(loc) == path


# --- generateName --------------------------------------------------------------

def test_generate_name_makes_a_unique_name_with_the_prefix() -> None:
    data = {"metadata": {"generateName": "digits-"}, "spec": {"image": "x"}}
    first, second = parse_job(data), parse_job(data)
    assert re.fullmatch(r"digits-[0-9a-f]{6}", first.name)
    assert first.name != second.name
    # the prefix is spent: the wire form carries the name, so resubmitting it names the same job
    assert first.to_dict()["metadata"]["name"] == first.name
    assert "generateName" not in first.to_dict()["metadata"]
    assert parse_job(first.to_dict()).name == first.name


def test_generate_name_in_snake_case_and_without_a_dash() -> None:
    assert re.fullmatch(r"run[0-9a-f]{6}", parse_job({"metadata": {"generate_name": "run"}, "spec": {"image": "x"}}).name)


def test_name_wins_over_generate_name() -> None:
    job = parse_job({"metadata": {"name": "given", "generateName": "prefix-"}, "spec": {"image": "x"}})
    assert job.name == "given"


@pytest.mark.parametrize(("prefix", "words"), [
    ("Digits-", "name prefix"),
    ("-digits", "name prefix"),
    ("a" * 58, "at most 57"),
])
def test_bad_generate_name_is_blamed_not_the_name_it_would_make(prefix: str, words: str) -> None:
    found = issues({"metadata": {"generateName": prefix}, "spec": {"image": "x"}})
    assert list(found) == ["metadata.generateName"]
    assert words in found["metadata.generateName"]


# --- files -----------------------------------------------------------------------

def test_load_job_from_json_and_yaml(tmp_path: Path) -> None:
    (tmp_path / "job.json").write_text(json.dumps(FULL))
    (tmp_path / "job.yaml").write_text(
        "metadata: {name: mnist-001, namespace: team-a}\n"
        "spec:\n  image: registry.example.com/mnist:1.2\n  hyperparameters: {lr: 0.01, epochs: 5}\n")
    from_json, from_yaml = load_job(tmp_path / "job.json"), load_job(tmp_path / "job.yaml")
    assert from_json.name == from_yaml.name == "mnist-001"
    assert from_yaml.spec.hyperparameters == {"lr": "0.01", "epochs": "5"}


def test_invalid_spec_file_lists_every_error_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "apiVersion: trainforge.dev/v1alpha1\nkind: TrainingJob\n"
        "metadata: {name: My_Job}\n"
        "spec:\n"
        "  image: ''\n"
        "  inputs:\n"
        "    - {channel: train, uri: s3://datasets/train/}\n"
        "    - {channel: validation, uri: 'gs://datasets/val/'}\n"
        "  retry: {maxAttempts: 0}\n"
        "  stoping: {maxRuntimeSeconds: 60}\n")
    with pytest.raises(SpecError) as info:
        load_job(path)
    assert info.value.source == str(path)
    assert [i.path for i in info.value.issues] == [
        "metadata.name", "spec.image", "spec.inputs[1].uri", "spec.retry.maxAttempts", "spec.stoping"]
    assert str(info.value).startswith(f"{path}: invalid job spec (5 problems):")


@pytest.mark.parametrize(("text", "words"), [
    ("{not json", "not valid JSON or YAML"),
    ("spec: [", "not valid JSON or YAML"),
    ("- a\n- b\n", "expected a JSON/YAML object, got list"),
    ("", "got an empty document"),
])
def test_unreadable_spec_text(text: str, words: str) -> None:
    with pytest.raises(SpecError, match=re.escape(words)) as info:
        parse_text(text, "job.yaml")
    assert str(info.value).startswith("job.yaml: ")


def test_missing_spec_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="file not found") as info:
        load_job(tmp_path / "absent.json")
    assert info.value.source == str(tmp_path / "absent.json")


def test_example_job_file_is_valid() -> None:
    example = Path(__file__).resolve().parents[2] / "containers" / "examples" / "digits-pytorch" / "job.json"
    job = load_job(example)
    assert job.name.startswith("digits-")
    assert [i.channel for i in job.spec.inputs] == ["train", "validation"]


# --- phases ----------------------------------------------------------------------

def test_finished_phases() -> None:
    assert {p for p in Phase if p.finished} == {Phase.COMPLETED, Phase.FAILED, Phase.STOPPED}


# --- schemas ---------------------------------------------------------------------

def walk(node: Any, path: str = "") -> list[tuple[str, Any]]:
    """Every (path, dict) in a schema."""
    out: list[tuple[str, Any]] = []
    if isinstance(node, dict):
        out.append((path, node))
        for key, value in node.items():
            out.extend(walk(value, f"{path}/{key}"))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out.extend(walk(value, f"{path}/{i}"))
    return out


def test_json_schema_uses_wire_names_and_forbids_unknown_fields() -> None:
    schema = json_schema()
    assert set(schema["properties"]) == {"apiVersion", "kind", "metadata", "spec", "status"}
    assert set(schema["required"]) == {"metadata", "spec"}
    spec = schema["$defs"]["TrainingJobSpec"]
    assert {"image", "instance", "hyperparameters", "inputs", "output", "checkpoints", "metrics",
            "stopping", "retry", "env", "suspend"} <= set(spec["properties"])
    assert spec["additionalProperties"] is False
    stopping = schema["$defs"]["Stopping"]["properties"]
    assert set(stopping) == {"maxRuntimeSeconds", "gracePeriodSeconds"}
    assert not [p for p, _ in walk(schema) if "_" in p.rsplit("/", 1)[-1] and "/properties/" in p
                and p.rsplit("/", 2)[-2] == "properties"]
    json.dumps(schema)  # serialisable as it is


@pytest.mark.parametrize("schema", [openapi_schema(), status_schema()], ids=["spec", "status"])
def test_openapi_schema_is_structural(schema: dict[str, Any]) -> None:
    text = json.dumps(schema)
    assert "$ref" not in text and "$defs" not in text
    for path, node in walk(schema):
        assert "anyOf" not in node or all(s.get("type") != "null" for s in node["anyOf"]), path
        assert "title" not in node and "const" not in node, path
        assert node.get("additionalProperties", {}) is not False, path
        assert "patternProperties" not in node and "propertyNames" not in node, path
        # structural: every property, item and map value says its type
        for name, sub in node.get("properties", {}).items():
            assert "type" in sub, f"{path}/properties/{name} has no type"
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                assert "type" in node[key], f"{path}/{key} has no type"


def test_openapi_schema_keeps_the_constraints_the_apiserver_can_check() -> None:
    schema = openapi_schema()
    props = schema["properties"]
    assert schema["required"] == ["image"]
    assert props["instance"]["properties"]["count"]["minimum"] == 1
    assert props["hyperparameters"] == {"type": "object", "additionalProperties": {"type": "string"}}
    channel = props["inputs"]["items"]
    assert set(channel["required"]) == {"channel", "uri"}
    assert channel["properties"]["distribution"]["enum"] == ["FullyReplicated", "ShardedByS3Key"]
    assert channel["properties"]["distribution"]["type"] == "string"
    assert props["output"]["nullable"] is True
    uri_pattern = re.compile(channel["properties"]["uri"]["pattern"])
    for good in ("s3://datasets/mnist/", "local://trainforge-data/x", "file:///tmp/data"):
        assert uri_pattern.match(good), good
    for bad in ("http://x/y", "s3://X/y", "file://relative"):
        assert not uri_pattern.match(bad), bad
    assert props["stopping"]["properties"]["maxRuntimeSeconds"]["default"] == 86400


def test_status_schema_has_the_phases() -> None:
    phase = status_schema()["properties"]["phase"]
    assert phase["enum"] == [p.value for p in Phase]


def test_status_round_trips_through_the_document() -> None:
    job = parse_job({**FULL, "status": {"phase": "Training", "attempts": 2, "finalMetrics": {"acc": 0.5},
                                        "unknownField": "ignored"}})
    assert job.status is not None and job.status.phase is Phase.TRAINING and job.status.attempts == 2
    assert TrainingJob.model_validate(job.to_dict()).status == job.status
