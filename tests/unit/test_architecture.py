"""The layering rules of STYLE.md, enforced: the SDK never imports the
controller; heavy dependencies stay behind their one boundary module."""

from __future__ import annotations

import ast
from pathlib import Path

import trainforge

SDK = Path(trainforge.__file__).resolve().parent
CONTROLLER = SDK.parents[1] / "controller" / "trainforge_controller"

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


# The controller talks to the object store through trainforge.storage and
# never runs containers itself.
CONTROLLER_FORBIDDEN = {"boto3", "botocore", "s3transfer", "docker"}


def test_controller_keeps_to_its_boundaries() -> None:
    offenders = [f"{path.name} imports {dependency}" for path in CONTROLLER.rglob("*.py")
                 for dependency in _imports(path) & CONTROLLER_FORBIDDEN]
    assert offenders == []


def _shared_name_constants(path: Path) -> list[str]:
    """Module-level names bound to a ``trainforge.dev`` string (or a tuple of
    strings holding one): a copy of what trainforge/names.py defines."""
    found = []
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            values = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
            if any(isinstance(v, ast.Constant) and isinstance(v.value, str) and v.value.startswith("trainforge.dev")
                   for v in values):
                found.append(f"{path.name}:{node.lineno}")
    return found


def test_shared_names_are_defined_once() -> None:
    """API group, versions, plurals, labels and annotations live in
    trainforge/names.py only; the SDK and the controller import them."""
    paths = [p for p in [*SDK.rglob("*.py"), *CONTROLLER.rglob("*.py")] if p != SDK / "names.py"]
    assert [hit for path in paths for hit in _shared_name_constants(path)] == []


def test_public_surface_is_pinned() -> None:
    assert sorted(trainforge.__all__) == [
        "Categorical", "Continuous", "Integer", "Job", "JobFailed", "ModelRegistry", "SpecError",
        "TrainforgeError", "TuningJobAnalytics", "get_job", "get_tuning_job", "list_jobs", "list_tuning_jobs",
        "register_model", "submit", "submit_job", "submit_tuning_job",
    ]
    for name in trainforge.__all__:
        assert hasattr(trainforge, name)
