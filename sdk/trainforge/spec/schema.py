"""JSON Schema export of the TrainingJob model, and the structural
(OpenAPI v3, ``$ref``-free) form a Kubernetes CRD needs."""

from __future__ import annotations

import copy
from typing import Any

from .models import TrainingJob, TrainingJobSpec, TrainingJobStatus


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a whole TrainingJob document (wire names)."""
    return TrainingJob.model_json_schema(by_alias=True)


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """Replace every $ref with its definition (the apiserver rejects $ref)."""
    if isinstance(node, dict):
        if "$ref" in node:
            target = copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]])
            rest = {k: v for k, v in node.items() if k != "$ref"}
            return _inline({**target, **rest}, defs)
        return {k: _inline(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


# JSON Schema keywords a CRD's structural schema may not carry.
_DROP = {"title", "$defs", "additionalProperties", "const", "examples"}


def _structural(node: Any) -> Any:
    if isinstance(node, list):
        return [_structural(v) for v in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    # Optional[X] comes out as anyOf [X, null]: collapse to X, nullable.
    any_of = node.pop("anyOf", None)
    if any_of is not None:
        real = [s for s in any_of if s.get("type") != "null"]
        if len(real) == 1:
            node = {**real[0], **node}
            if len(real) != len(any_of):
                node["nullable"] = True
        else:
            node["anyOf"] = real
    # Structural schemas allow no patternProperties: keep the value schema only
    # (the key pattern is still enforced by the SDK and the controller).
    pattern_props = node.pop("patternProperties", None)
    if pattern_props:
        node["additionalProperties"] = next(iter(pattern_props.values()))
    if node.get("default", 0) is None:
        node.pop("default")
    additional = node.get("additionalProperties")
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "properties":
            out[key] = {k: _structural(v) for k, v in value.items()}
        elif key in ("items",):
            out[key] = _structural(value)
        elif key == "enum" and "type" not in node:
            out["type"] = "string"
            out[key] = value
        elif key == "propertyNames":
            continue
        else:
            out[key] = value
    if isinstance(additional, dict):
        out["additionalProperties"] = _structural(additional)
    if "const" in node:
        out["enum"] = [node["const"]]
        out.setdefault("type", "string")
    return out


def openapi_schema(model: type = TrainingJobSpec) -> dict[str, Any]:
    """A structural OpenAPI v3 schema for ``model`` (spec or status)."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return _structural(_inline(raw, raw.get("$defs", {})))


def status_schema() -> dict[str, Any]:
    return openapi_schema(TrainingJobStatus)
