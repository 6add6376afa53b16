"""Loading TrainingJob documents from files, text and dicts, with every
validation problem reported by its field path (``spec.inputs[0].uri``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..errors import SpecError, SpecIssue
from .models import PATTERN_MEANING, TrainingJob
from .tuning import TuningJob, TuningSpecProblems


def field_path(loc: tuple[Any, ...]) -> str:
    """('spec', 'inputs', 0, 'uri') -> 'spec.inputs[0].uri'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith(("function-", "constrained-")):
            continue  # pydantic's internal validator names say nothing to users
        elif part == "[key]":
            out += " (key)"
        else:
            out += f".{part}" if out else str(part)
    return out


_MISSING = "required field is missing"


def _describe(error: dict[str, Any]) -> str:
    kind, msg = str(error["type"]), str(error["msg"])
    if kind == "missing":
        return _MISSING
    if kind == "extra_forbidden":
        return "unknown field (check the spelling; fields are camelCase)"
    if kind == "string_too_short" and error.get("ctx", {}).get("min_length") == 1:
        msg = "must not be empty"
    if kind == "string_pattern_mismatch":
        pattern = error.get("ctx", {}).get("pattern", "")
        msg = f"expected {PATTERN_MEANING.get(pattern, f'a string matching {pattern!r}')}"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    value = error.get("input")
    scalar = isinstance(value, (str, int, float, bool))
    if kind not in ("model_type", "dict_type", "list_type") and scalar and repr(value) not in msg:
        msg += f" (got {value!r})"
    return msg


def _issues_of(error: dict[str, Any], prefix: tuple[Any, ...]) -> list[SpecIssue]:
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, TuningSpecProblems):  # cross-field rules carry their own paths
        return [SpecIssue(field_path(prefix + tuple(error["loc"]) + path), message)
                for path, message in cause.problems]
    return [SpecIssue(field_path(prefix + tuple(error["loc"])), _describe(error))]


def issues_from(error: ValidationError, prefix: tuple[Any, ...] = ()) -> list[SpecIssue]:
    issues = [issue for e in error.errors() for issue in _issues_of(e, prefix)]
    # A bad metadata.generateName leaves no name: report the cause, not also its consequence.
    bad_prefixes = {i.path for i in issues if i.path.endswith("metadata.generateName")}
    return [i for i in issues if not (i.path.endswith("metadata.name") and i.message == _MISSING
                                      and i.path[:-len("name")] + "generateName" in bad_prefixes)]


def _validate(model: type[Any], data: Any, source: str | None) -> Any:
    if not isinstance(data, Mapping):
        got = "an empty document" if data is None else type(data).__name__
        raise SpecError([SpecIssue("", f"expected a JSON/YAML object, got {got}")], source)
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        raise SpecError(issues_from(exc), source) from None


def parse_job(data: Mapping[str, Any], source: str | None = None) -> TrainingJob:
    """Validate a TrainingJob document given as a dict (camelCase or snake_case)."""
    job: TrainingJob = _validate(TrainingJob, data, source)
    return job


def parse_tuning_job(data: Mapping[str, Any], source: str | None = None) -> TuningJob:
    """Validate a TuningJob document given as a dict (camelCase or snake_case)."""
    tuning: TuningJob = _validate(TuningJob, data, source)
    return tuning


def _decode(text: str, source: str | None) -> Any:
    try:
        # YAML is a superset of JSON; json first gives better messages for .json files.
        return json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise SpecError([SpecIssue("", f"not valid JSON or YAML: {exc}")], source) from None


def parse_text(text: str, source: str | None = None) -> TrainingJob:
    return parse_job(_decode(text, source), source)


def parse_tuning_text(text: str, source: str | None = None) -> TuningJob:
    return parse_tuning_job(_decode(text, source), source)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([SpecIssue("", "file not found")], str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([SpecIssue("", f"cannot read file: {exc}")], str(path)) from None


def load_job(path: str | Path) -> TrainingJob:
    """Load a TrainingJob from a .json/.yaml/.yml file."""
    return parse_text(_read(Path(path)), str(path))


def load_tuning_job(path: str | Path) -> TuningJob:
    """Load a TuningJob from a .json/.yaml/.yml file."""
    return parse_tuning_text(_read(Path(path)), str(path))
