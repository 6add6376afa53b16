"""A hypothesis fuzz of spec loading through the CLI (issue 9).

Documents start from a complete valid TrainingJob and are mutated where it
hurts: values replaced by random JSON (wrong types, unicode, control
characters), keys removed or added, values nested dozens of levels deep,
integers longer than Python converts; written as JSON or YAML, or replaced by
random text or bytes. ``trainforge validate`` must answer 0 or 2, and
``trainforge submit`` (whose trainer directory does not exist, so nothing
runs) 2 or 4; never a traceback, every problem one printable line naming its
field path. The example count is bounded so this runs in CI in seconds.
"""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trainforge.cli import main

VALID: dict[str, Any] = {
    "apiVersion": "trainforge.dev/v1alpha1", "kind": "TrainingJob",
    "metadata": {"name": "fuzz", "namespace": "team-a", "labels": {"team": "a"}},
    "spec": {
        "image": "/nonexistent/trainer",
        "instance": {"type": "local", "count": 1},
        "hyperparameters": {"lr": "0.1", "epochs": 3},
        "inputs": [{"channel": "train", "uri": "local://datasets/x/", "mode": "File"}],
        "output": {"uri": "local://models/x/"},
        "checkpoints": {"uri": "local://ckpt/{job}/"},
        "metrics": [{"name": "acc", "regex": "acc=([0-9.]+)"}],
        "stopping": {"maxRuntimeSeconds": 60, "gracePeriodSeconds": 5},
        "retry": {"maxAttempts": 2},
        "env": {"LOG_LEVEL": "info"},
    },
}
# Issues about the document as a whole carry no field path.
DOCUMENT_LEVEL = ("not valid JSON or YAML", "nested too deeply to read", "the document holds more than",
                  "larger than", "expected a JSON/YAML object", "cannot read file")
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


class Huge:
    """An integer of ``digits`` digits, written out by the serialiser."""

    def __init__(self, digits: int, negative: bool):
        self.text = ("-" if negative else "") + "1" + "0" * (digits - 1)


texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), texts,
                    st.sampled_from(["", "0", "-1", "1e309", "NaN", "gpu-1x", "../x", "{job}", "s3://", "\x1b[2J"]),
                    st.builds(Huge, st.integers(4290, 6000), st.booleans()))
values = st.recursive(scalars, lambda children: st.lists(children, max_size=4)
                      | st.dictionaries(texts, children, max_size=4), max_leaves=12)


def paths(document: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(document, dict):
        for key, value in document.items():
            found += paths(value, prefix + (key,))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found += paths(value, prefix + (index,))
    return found


def replace(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    parent = document
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = value
    return document


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    document: Any = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 3))):
        targets = paths(document)
        path = draw(st.sampled_from(targets[1:] if len(targets) > 1 else targets))
        kind = draw(st.sampled_from(["replace", "delete", "add", "nest", "huge"]))
        if kind == "replace":
            document = replace(document, path, draw(values))
        elif kind == "delete" and path:
            parent = document
            for part in path[:-1]:
                parent = parent[part]
            del parent[path[-1]]
        elif kind == "add" and path:
            parent = document
            for part in path[:-1]:
                parent = parent[part]
            if isinstance(parent, dict):
                parent[draw(texts)] = draw(values)
        elif kind == "nest":
            value: Any = draw(scalars)
            for level in range(draw(st.integers(1, 80))):
                value = [value] if level % 2 else {"k": value}
            document = replace(document, path, value)
        else:
            document = replace(document, path, draw(st.builds(Huge, st.integers(4290, 6000), st.booleans())))
    return document


def serialise(document: Any, form: str) -> bytes:
    huge: dict[str, str] = {}

    def plain(value: Any) -> Any:
        if isinstance(value, Huge):
            token = f"HUGE{len(huge)}TOKEN"
            huge[token] = value.text
            return token
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)  # the fuzz writes what a hostile file may hold
    try:
        simple = plain(document)
        text = (json.dumps(simple) if form == "json"
                else yaml.safe_dump(simple, allow_unicode=True, default_flow_style=None))
    finally:
        sys.set_int_max_str_digits(limit)
    for token, digits in huge.items():
        text = text.replace(f'"{token}"', digits).replace(f"'{token}'", digits).replace(token, digits)
    return text.encode("utf-8")


# What YAML can say that a JSON-shaped generator does not: tags, non-string keys, anchors.
YAML_ODDITIES = [
    "metadata: {name: a}\nspec: {image: x, hyperparameters: {2001-01-01: 1, 3: 4, null: 5, .inf: 6}}\n",
    "metadata: {name: a}\nspec: {image: !!binary aGVsbG8=, env: {A: !!timestamp 2001-01-01}}\n",
    "metadata: !!set {a, b}\nspec: {image: x}\n",
    "metadata: {name: a}\nspec: {image: x, hyperparameters: {? [a, b]: c}}\n",
    "a: &a [*a]\n",
    "metadata: {name: a}\nspec: {image: x, env: {A: 0x_ff, B: 0b1_0, C: 190:20:30}}\n",
    "metadata: {name: a}\nspec: {image: x}\n---\nsecond: document\n",
    "metadata: {name: a}\nspec: {image: !!python/name:os.system x}\n",
    "%YAML 9.9\n---\na: b\n",
    "metadata: {<<: [{name: a}, {namespace: b}]}\nspec: {image: x}\n",
]
files = st.one_of(
    st.tuples(mutated(), st.sampled_from(["json", "yaml"])).map(lambda pair: serialise(*pair)),
    st.sampled_from(YAML_ODDITIES).map(str.encode),
    st.binary(max_size=200),
    texts.map(lambda text: text.encode("utf-8")),
)
names = st.one_of(st.none(), st.sampled_from(["ok-name", "../x", "..", "/etc/passwd", "a" * 64, "UPPER", ""]), texts)


def check_error(output: str) -> None:
    assert "Traceback" not in output, output
    assert not CONTROL.search(output), output
    lines = output.splitlines()
    assert lines and lines[0].startswith("error: "), output
    if len(lines) == 1:
        issues = [lines[0].split("invalid job spec: ", 1)[-1]] if "invalid job spec: " in lines[0] else []
    else:
        assert lines[0].endswith("problems):"), output
        assert all(line.startswith("  - ") for line in lines[1:]), output
        issues = [line[4:] for line in lines[1:]]
    for issue in issues:
        # a field path, then what was expected; or a problem of the whole document
        assert issue.startswith(DOCUMENT_LEVEL) or re.match(r"^\S.*?: \S", issue), issue


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for variable in ("TRAINFORGE_BACKEND", "TRAINFORGE_CONFIG"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("TRAINFORGE_HOME", str(tmp_path / "home"))
    return tmp_path


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(content=files, suffix=st.sampled_from([".json", ".yaml", ".yml"]), name=names)
def test_spec_files_never_crash_the_cli(home: Path, content: bytes, suffix: str, name: str | None) -> None:
    spec = home / f"job{suffix}"
    spec.write_bytes(content)
    runner = CliRunner()

    checked = runner.invoke(main, ["validate", str(spec)])
    assert checked.exit_code in (0, 2), checked.output
    assert checked.exception is None or isinstance(checked.exception, SystemExit), repr(checked.exception)
    if checked.exit_code == 2:
        check_error(checked.output)

    submitted = runner.invoke(main, ["submit", str(spec), *(["--name", name] if name is not None else [])])
    assert submitted.exception is None or isinstance(submitted.exception, SystemExit), repr(submitted.exception)
    # The trainer directory does not exist: nothing may start. 4 only for a GPU refusal.
    assert submitted.exit_code == 2 or (submitted.exit_code == 4 and "GPU" in submitted.output), submitted.output
    check_error(submitted.output)
    assert not (home / "home" / "jobs").exists() or not any((home / "home" / "jobs").iterdir())


def test_the_valid_document_is_valid(home: Path) -> None:
    spec = home / "job.json"
    spec.write_bytes(serialise(VALID, "json"))
    result = CliRunner().invoke(main, ["validate", str(spec), "-o", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["spec"]["checkpoints"]["uri"] == "local://ckpt/fuzz/"
