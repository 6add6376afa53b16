"""The TrainingJob CustomResourceDefinition, generated from the SDK's pydantic
models (``trainforge.spec.schema``) so the apiserver validates what the SDK does.

``python -m trainforge_controller.crds`` rewrites the committed file
``k8s/crds/trainforge.dev_trainingjobs.yaml``; ``--check`` fails when it is stale.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import yaml

from trainforge.spec.schema import openapi_schema, status_schema

from . import GROUP, KIND, PLURAL, VERSION

CRD_FILE = Path(__file__).resolve().parents[2] / "k8s" / "crds" / f"{GROUP}_{PLURAL}.yaml"

PRINTER_COLUMNS = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Instance", "type": "string", "jsonPath": ".spec.instance.type"},
    {"name": "Hosts", "type": "integer", "jsonPath": ".spec.instance.count"},
    {"name": "GPUs", "type": "integer", "jsonPath": ".status.gpus",
     "description": "GPUs across all hosts, from the instance catalog"},
    {"name": "Attempts", "type": "integer", "jsonPath": ".status.attempts", "priority": 1},
    {"name": "Metric", "type": "string", "jsonPath": ".status.headlineMetric",
     "description": "the first metric definition's final value"},
    {"name": "Reason", "type": "string", "jsonPath": ".status.failureReason", "priority": 1},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def _status_schema() -> dict[str, Any]:
    schema = status_schema()
    # Controller-only fields (the SDK's status model ignores them).
    schema["properties"].update({
        "gpus": {"type": "integer", "description": "GPUs across all hosts"},
        "headlineMetric": {"type": "string", "description": "<name>=<value> of the first metric"},
        "observedGeneration": {"type": "integer", "format": "int64"},
    })
    return schema


# Bounds the CEL cost estimator needs (the models leave these open).
MAX_URI_LENGTH = 1024
MAX_CHANNELS = 32


def _bound(spec: dict[str, Any]) -> None:
    props = spec["properties"]
    props["inputs"]["maxItems"] = MAX_CHANNELS
    for holder in (props["inputs"]["items"], props["output"], props["checkpoints"]):
        holder["properties"]["uri"]["maxLength"] = MAX_URI_LENGTH


def crd() -> dict[str, Any]:
    """The CRD as a dict (deterministic: the same models give the same bytes)."""
    spec = copy.deepcopy(openapi_schema())
    _bound(spec)
    root = {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": _status_schema(),
        },
        # metadata.name doubles as a DNS label for the child Job, Service and pods.
        "x-kubernetes-validations": [{
            "rule": "self.metadata.name.size() <= 50",
            "message": "metadata.name must be at most 50 characters (child names add a suffix)",
        }],
    }
    spec.setdefault("x-kubernetes-validations", []).append({
        "rule": "!has(self.output) || !has(self.inputs) || "
                "self.inputs.all(i, i.uri != self.output.uri)",
        "message": "spec.output.uri must differ from every spec.inputs[].uri",
    })
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "annotations": {"trainforge.dev/generated-by": "python -m trainforge_controller.crds"},
        },
        "spec": {
            "group": GROUP,
            "names": {"kind": KIND, "listKind": f"{KIND}List", "plural": PLURAL,
                      "singular": KIND.lower(), "shortNames": ["tj"], "categories": ["trainforge"]},
            "scope": "Namespaced",
            "versions": [{
                "name": VERSION, "served": True, "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": PRINTER_COLUMNS,
                "schema": {"openAPIV3Schema": root},
            }],
        },
    }


def render() -> str:
    header = ("# GENERATED from sdk/trainforge/spec/models.py by "
              "`python -m trainforge_controller.crds`; do not edit.\n")
    return header + yaml.safe_dump(crd(), sort_keys=True, width=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed file is stale")
    parser.add_argument("--output", type=Path, default=CRD_FILE)
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is stale: run python -m trainforge_controller.crds", file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
