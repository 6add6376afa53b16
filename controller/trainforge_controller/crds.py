"""The CustomResourceDefinitions of every kind (TrainingJob, TuningJob),
generated from the SDK's pydantic models (``trainforge.spec.schema``) so the
apiserver validates what the SDK does.

``python -m trainforge_controller.crds`` rewrites the committed files
``k8s/crds/trainforge.dev_<plural>.yaml``; ``--check`` fails when one is stale.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import yaml

from trainforge.names import GROUP, TRAINING_KIND, TRAINING_PLURAL, TUNING_KIND, TUNING_PLURAL, VERSION
from trainforge.spec.schema import openapi_schema, status_schema
from trainforge.spec.tuning import MAX_NAME as MAX_TUNING_NAME
from trainforge.spec.tuning import TuningJobSpec, TuningJobStatus

CRD_DIR = Path(__file__).resolve().parents[2] / "k8s" / "crds"
PLURALS = {TRAINING_KIND: TRAINING_PLURAL, TUNING_KIND: TUNING_PLURAL}
CRD_FILES = {kind: CRD_DIR / f"{GROUP}_{plural}.yaml" for kind, plural in PLURALS.items()}
CRD_FILE = CRD_FILES[TRAINING_KIND]

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


TUNING_PRINTER_COLUMNS = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Done", "type": "integer", "jsonPath": ".status.trials.completed",
     "description": "trials completed"},
    {"name": "Running", "type": "integer", "jsonPath": ".status.trials.running"},
    {"name": "Pending", "type": "integer", "jsonPath": ".status.trials.pending", "priority": 1},
    {"name": "Failed", "type": "integer", "jsonPath": ".status.trials.failed"},
    {"name": "Stopped", "type": "integer", "jsonPath": ".status.trials.stopped", "priority": 1},
    {"name": "Best", "type": "number", "jsonPath": ".status.bestTrial.objective",
     "description": "the best trial's final objective"},
    {"name": "Best-Trial", "type": "string", "jsonPath": ".status.bestTrial.name", "priority": 1},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]
SHORT_NAMES = {TRAINING_KIND: ["tj"], TUNING_KIND: ["tuning"]}


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
    """``spec``: a TrainingJob spec's schema (also a TuningJob's template)."""
    props = spec["properties"]
    props["inputs"]["maxItems"] = MAX_CHANNELS
    for holder in (props["inputs"]["items"], props["output"], props["checkpoints"]):
        holder["properties"]["uri"]["maxLength"] = MAX_URI_LENGTH


_OUTPUT_RULE = {
    "rule": "!has(self.output) || !has(self.inputs) || self.inputs.all(i, i.uri != self.output.uri)",
    "message": "spec.output.uri must differ from every spec.inputs[].uri",
}


def _training_schema() -> tuple[dict[str, Any], dict[str, Any], int]:
    spec = copy.deepcopy(openapi_schema())
    _bound(spec)
    spec.setdefault("x-kubernetes-validations", []).append(dict(_OUTPUT_RULE))
    # metadata.name doubles as a DNS label for the child Job, Service and pods.
    return spec, _status_schema(), 50


def _tuning_schema() -> tuple[dict[str, Any], dict[str, Any], int]:
    spec = copy.deepcopy(openapi_schema(TuningJobSpec))
    template = spec["properties"]["trainingJobTemplate"]
    _bound(template)
    template.setdefault("x-kubernetes-validations", []).append({
        **_OUTPUT_RULE, "message": "spec.trainingJobTemplate.output.uri must differ from every inputs[].uri"})
    return spec, openapi_schema(TuningJobStatus), MAX_TUNING_NAME


def crd(kind: str = TRAINING_KIND) -> dict[str, Any]:
    """The CRD of ``kind`` as a dict (deterministic: the same models give the same bytes)."""
    spec, status, max_name = (_training_schema if kind == TRAINING_KIND else _tuning_schema)()
    plural = PLURALS[kind]
    root = {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
        "x-kubernetes-validations": [{
            "rule": f"self.metadata.name.size() <= {max_name}",
            "message": f"metadata.name must be at most {max_name} characters (child names add a suffix)",
        }],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{GROUP}",
            "annotations": {"trainforge.dev/generated-by": "python -m trainforge_controller.crds"},
        },
        "spec": {
            "group": GROUP,
            "names": {"kind": kind, "listKind": f"{kind}List", "plural": plural,
                      "singular": kind.lower(), "shortNames": SHORT_NAMES[kind], "categories": ["trainforge"]},
            "scope": "Namespaced",
            "versions": [{
                "name": VERSION, "served": True, "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": PRINTER_COLUMNS if kind == TRAINING_KIND else TUNING_PRINTER_COLUMNS,
                "schema": {"openAPIV3Schema": root},
            }],
        },
    }


def render(kind: str = TRAINING_KIND) -> str:
    source = "models.py" if kind == TRAINING_KIND else "tuning.py"
    header = (f"# GENERATED from sdk/trainforge/spec/{source} by "
              "`python -m trainforge_controller.crds`; do not edit.\n")
    return header + yaml.safe_dump(crd(kind), sort_keys=True, width=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a committed file is stale")
    parser.add_argument("--output-dir", type=Path, default=CRD_DIR)
    args = parser.parse_args(argv)
    stale = 0
    for kind, plural in PLURALS.items():
        path = args.output_dir / f"{GROUP}_{plural}.yaml"
        text = render(kind)
        if args.check:
            if (path.read_text() if path.exists() else "") != text:
                print(f"{path} is stale: run python -m trainforge_controller.crds", file=sys.stderr)
                stale += 1
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
