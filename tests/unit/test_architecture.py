"""The layering rules of STYLE.md, enforced: the SDK never imports the
controller; heavy dependencies stay behind their one boundary module."""

from __future__ import annotations

import ast
from pathlib import Path

import trainforge

SDK = Path(trainforge.__file__).resolve().parent

# dependency -> the only places (relative to sdk/trainforge) allowed to import it
BOUNDARIES = {
    "boto3": ("storage/",), "botocore": ("storage/",), "s3transfer": ("storage/",),
    "docker": ("backends/local/container.py", "images.py"),
    "kubernetes": ("backends/kubernetes",),
    "trainforge_controller": (),
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_dependencies_stay_behind_their_boundaries() -> None:
    offenders = []
    for path in SDK.rglob("*.py"):
        rel = path.relative_to(SDK).as_posix()
        for dependency in _imports(path) & BOUNDARIES.keys():
            if not rel.startswith(BOUNDARIES[dependency]) or not BOUNDARIES[dependency]:
                offenders.append(f"{rel} imports {dependency}")
    assert offenders == []


def test_public_surface_is_pinned() -> None:
    assert sorted(trainforge.__all__) == [
        "Categorical", "Continuous", "Integer", "Job", "JobFailed", "ModelRegistry", "SpecError",
        "TrainforgeError", "TuningJobAnalytics", "get_job", "get_tuning_job", "list_jobs", "list_tuning_jobs",
        "register_model", "submit", "submit_job", "submit_tuning_job",
    ]
    for name in trainforge.__all__:
        assert hasattr(trainforge, name)
