"""Loading TrainingJob documents from files, text and dicts, with every
validation problem reported by its field path (``spec.inputs[0].uri``).

Spec files are untrusted input: a file is read up to ``MAX_SPEC_BYTES``, a
document may nest at most ``MAX_DEPTH`` levels and hold at most
``MAX_VALUES`` values (a YAML alias bomb counts every reference), and a
number longer than Python converts (4300 digits) is reported at its path,
before pydantic sees anything.
"""

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
from .tuning import TuningJob, TuningSpecProblems

_NAME = re.compile(NAME_PATTERN)

MAX_SPEC_BYTES = 1024 * 1024
MAX_DEPTH = 32
MAX_VALUES = 100_000
_MAX_DIGITS = 4300  # CPython's int/str conversion limit (sys.get_int_max_str_digits)


class _HugeNumber(str):
    """A number literal too long to convert; reported with its path by _shape_issues."""


def _int_or_huge(text: str) -> int | str:
    return _HugeNumber(text) if len(text.lstrip("+-")) > _MAX_DIGITS else int(text)


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, with huge integers kept as text instead of raising."""

    def construct_yaml_int(self, node: yaml.ScalarNode) -> Any:  # type: ignore[override]
        try:
            return super().construct_yaml_int(node)
        except ValueError:
            return _HugeNumber(str(node.value))


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)


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
        elif part == "":
            out += "['']"  # an empty key must still show where it is
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
    if kind not in ("model_type", "dict_type", "list_type") and scalar:
        shown = _short_repr(value)
        if shown not in msg:
            msg += f" (got {shown})"
    return msg


def _short_repr(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"a {value.bit_length()}-bit integer"  # repr() of a huge int raises
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}... ({len(text)} characters)"


def _shape_issues(data: Any) -> list[SpecIssue]:
    """What makes a parsed document unfit to validate at all: too deep, too
    many values, numbers too long; iterative, so it cannot recurse itself."""
    issues: list[SpecIssue] = []
    stack: list[tuple[tuple[Any, ...], Any]] = [((), data)]
    seen = 0
    while stack:
        loc, value = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            return [SpecIssue("", f"the document holds more than {MAX_VALUES} values (YAML aliases count "
                                  "every time they are used)")]
        if len(loc) > MAX_DEPTH:
            return [SpecIssue(field_path(loc[:MAX_DEPTH]), f"nested more than {MAX_DEPTH} levels deep")]
        if isinstance(value, _HugeNumber):
            issues.append(SpecIssue(field_path(loc), f"a number of {len(value.lstrip('+-'))} digits "
                                                     f"(at most {_MAX_DIGITS})"))
        elif isinstance(value, Mapping):
            for key, item in value.items():
                if isinstance(key, _HugeNumber):
                    issues.append(SpecIssue(field_path(loc), "a key that is a number of "
                                                             f"{len(key.lstrip('+-'))} digits"))
                    continue
                stack.append((loc + (key,), item))
        elif isinstance(value, (list, tuple)):
            stack.extend((loc + (i,), item) for i, item in enumerate(value))
    return issues


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


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's several-line message as one line: what and where."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        mark = exc.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        context = f"{exc.context}: " if exc.context else ""
        return f"{context}{exc.problem}{where}"
    return " ".join(str(exc).split())


def _decode(text: str, source: str | None) -> Any:
    """JSON or YAML text -> data, bounded in depth, size and number length."""
    try:
        # YAML is a superset of JSON; json first gives better messages for .json files.
        if text.lstrip().startswith("{"):
            data = json.loads(text, parse_int=_int_or_huge)
        else:
            data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except json.JSONDecodeError as exc:
        raise SpecError([SpecIssue("", f"not valid JSON or YAML: {exc}")], source) from None
    except yaml.YAMLError as exc:
        raise SpecError([SpecIssue("", f"not valid JSON or YAML: {_yaml_problem(exc)}")], source) from None
    except RecursionError:
        raise SpecError([SpecIssue("", f"nested too deeply to read (at most {MAX_DEPTH} levels)")], source) from None
    issues = _shape_issues(data)
    if issues:
        raise SpecError(issues, source)
    return data


def parse_text(text: str, source: str | None = None) -> TrainingJob:
    return parse_job(_decode(text, source), source)


def parse_tuning_text(text: str, source: str | None = None) -> TuningJob:
    return parse_tuning_job(_decode(text, source), source)


def _read(path: Path) -> str:
    try:
        with open(path, "rb") as fh:  # bounded: a spec may be /dev/zero
            raw = fh.read(MAX_SPEC_BYTES + 1)
        if len(raw) > MAX_SPEC_BYTES:
            raise SpecError([SpecIssue("", f"larger than {MAX_SPEC_BYTES // 1024} KiB; a job spec is small "
                                           "(large values belong in an input channel)")], str(path))
        return raw.decode("utf-8")
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
