"""Loading TrainingJob documents from files, text and dicts, with every
validation problem reported by its field path (``spec.inputs[0].uri``)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..errors import InvalidJobName, SpecError, SpecIssue
from .models import NAME_PATTERN, PATTERN_MEANING, TrainingJob

_NAME = re.compile(NAME_PATTERN)


def check_job_name(name: object) -> str:
    """``name`` if it can be a job's name (a DNS-1123 label, at most 63
    characters), else InvalidJobName: every lookup calls this before the name
    becomes part of a path or a URL, so ``../x`` never reaches the filesystem."""
    if not isinstance(name, str):
        raise InvalidJobName(repr(name), f"a string, got {type(name).__name__}")
    if not (len(name) <= 63 and _NAME.fullmatch(name)):
        raise InvalidJobName(name, PATTERN_MEANING[NAME_PATTERN] + ", at most 63 characters")
    return name


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


def issues_from(error: ValidationError, prefix: tuple[Any, ...] = ()) -> list[SpecIssue]:
    issues = [SpecIssue(field_path(prefix + tuple(e["loc"])), _describe(e)) for e in error.errors()]
    # A bad metadata.generateName leaves no name: report the cause, not also its consequence.
    bad_prefixes = {i.path for i in issues if i.path.endswith("metadata.generateName")}
    return [i for i in issues if not (i.path.endswith("metadata.name") and i.message == _MISSING
                                      and i.path[:-len("name")] + "generateName" in bad_prefixes)]


def parse_job(data: Mapping[str, Any], source: str | None = None) -> TrainingJob:
    """Validate a TrainingJob document given as a dict (camelCase or snake_case)."""
    if not isinstance(data, Mapping):
        got = "an empty document" if data is None else type(data).__name__
        raise SpecError([SpecIssue("", f"expected a JSON/YAML object, got {got}")], source)
    try:
        return TrainingJob.model_validate(dict(data))
    except ValidationError as exc:
        raise SpecError(issues_from(exc), source) from None


def parse_text(text: str, source: str | None = None) -> TrainingJob:
    try:
        # YAML is a superset of JSON; json first gives better messages for .json files.
        data = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise SpecError([SpecIssue("", f"not valid JSON or YAML: {exc}")], source) from None
    return parse_job(data, source)


def load_job(path: str | Path) -> TrainingJob:
    """Load a TrainingJob from a .json/.yaml/.yml file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([SpecIssue("", "file not found")], str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([SpecIssue("", f"cannot read file: {exc}")], str(path)) from None
    return parse_text(text, str(path))
