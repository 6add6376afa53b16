"""The RetrainingPolicy CustomResourceDefinition, generated from
``trainforge.spec.retraining`` like the TrainingJob's.

``python -m trainforge_controller.retraining.crd`` rewrites the committed file
``k8s/crds/trainforge.dev_retrainingpolicies.yaml``; ``--check`` fails when it is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from trainforge.spec.retraining import RETRAINING_KIND, RetrainingPolicySpec, RetrainingPolicyStatus
from trainforge.spec.schema import openapi_schema

from .. import GROUP, VERSION
from ..crds import _bound

PLURAL = "retrainingpolicies"
CRD_FILE = Path(__file__).resolve().parents[3] / "k8s" / "crds" / f"{GROUP}_{PLURAL}.yaml"
PRINTER_COLUMNS = [
    {"name": "Model", "type": "string", "jsonPath": ".spec.model.name"},
    {"name": "Schedule", "type": "string", "jsonPath": ".spec.schedule"},
    {"name": "Active", "type": "string", "jsonPath": ".status.active"},
    {"name": "Runs", "type": "integer", "jsonPath": ".status.runsStarted"},
    {"name": "Last", "type": "string", "jsonPath": ".status.lastScheduleTime", "priority": 1},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def crd() -> dict[str, Any]:
    spec = openapi_schema(RetrainingPolicySpec)
    _bound(spec["properties"]["trainingJobTemplate"])
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}",
                     "annotations": {"trainforge.dev/generated-by": "python -m trainforge_controller.retraining.crd"}},
        "spec": {
            "group": GROUP,
            "names": {"kind": RETRAINING_KIND, "listKind": f"{RETRAINING_KIND}List", "plural": PLURAL,
                      "singular": RETRAINING_KIND.lower(), "shortNames": ["rtp"], "categories": ["trainforge"]},
            "scope": "Namespaced",
            "versions": [{
                "name": VERSION, "served": True, "storage": True, "subresources": {"status": {}},
                "additionalPrinterColumns": PRINTER_COLUMNS,
                "schema": {"openAPIV3Schema": {
                    "type": "object", "required": ["spec"],
                    "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                                   "metadata": {"type": "object"}, "spec": spec,
                                   "status": openapi_schema(RetrainingPolicyStatus)},
                    # children are <name[:50]>-<n>: the policy name itself may be a full label
                }},
            }],
        },
    }


def render() -> str:
    header = ("# GENERATED from sdk/trainforge/spec/retraining.py by "
              "`python -m trainforge_controller.retraining.crd`; do not edit.\n")
    return header + yaml.safe_dump(crd(), sort_keys=True, width=100)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = render()
    if args == ["--check"]:
        if not CRD_FILE.exists() or CRD_FILE.read_text() != text:
            print(f"{CRD_FILE} is stale: run python -m trainforge_controller.retraining.crd", file=sys.stderr)
            return 1
        return 0
    CRD_FILE.write_text(text)
    print(f"wrote {CRD_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
