"""Typed access to the job's hyperparameters.

Hyperparameters travel as strings (as in SageMaker); the trainer says which type
it wants, and a value that does not fit fails with a message naming the
hyperparameter, its value, the expected type and where it came from.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from typing import Any, Callable, TypeAlias, TypeVar, overload

from .errors import HyperparameterError

T = TypeVar("T")
D = TypeVar("D")


# The getters below shadow these names inside the class.
_Str: TypeAlias = str
_Int: TypeAlias = int
_Float: TypeAlias = float
_Bool: TypeAlias = bool


class _Missing:
    def __repr__(self) -> str:
        return "<required>"


_REQUIRED: Any = _Missing()

_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


def to_wire_string(value: Any) -> str:
    """A JSON value as the string a trainer would see on the wire."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value, sort_keys=True)


def _parse_int(text: str) -> int:
    stripped = text.strip()
    body = stripped[1:] if stripped[:1] in "+-" else stripped
    if not body.isdigit() or not body.isascii():  # "1.5", "1e3", "0x10", "" and "١" are not ints here
        raise ValueError(text)
    return int(stripped)


def _parse_float(text: str) -> float:
    value = float(text.strip())
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def _parse_bool(text: str) -> bool:
    folded = text.strip().lower()
    if folded in _TRUE:
        return True
    if folded in _FALSE:
        return False
    raise ValueError(text)


class Hyperparameters(Mapping[_Str, _Str]):
    """A read-only mapping of hyperparameter name -> string value, with typed getters.

    Each getter takes an optional default; without one the hyperparameter is
    required. Names present but never asked for are allowed.
    """

    def __init__(self, values: Mapping[_Str, Any] | None = None, *, source: _Str = "hyperparameters"):
        self._values: dict[_Str, _Str] = {str(k): to_wire_string(v) for k, v in (values or {}).items()}
        self.source = source

    # Mapping interface -------------------------------------------------
    def __getitem__(self, name: _Str) -> _Str:
        return self._values[name]

    def __iter__(self) -> Iterator[_Str]:
        return iter(self._values)

    def __len__(self) -> _Int:
        return len(self._values)

    def __repr__(self) -> _Str:
        return f"Hyperparameters({self._values!r}, source={self.source!r})"

    def names(self) -> list[_Str]:
        """The names given to this job, in the order they were written."""
        return list(self._values)

    def as_dict(self) -> dict[_Str, _Str]:
        return dict(self._values)

    # Typed getters -----------------------------------------------------
    @overload
    def str(self, name: _Str) -> _Str: ...
    @overload
    def str(self, name: _Str, default: D) -> _Str | D: ...
    def str(self, name: _Str, default: Any = _REQUIRED) -> Any:
        return self._get(name, default, "a string", lambda text: text)

    @overload
    def int(self, name: _Str) -> _Int: ...
    @overload
    def int(self, name: _Str, default: D) -> _Int | D: ...
    def int(self, name: _Str, default: Any = _REQUIRED) -> Any:
        return self._get(name, default, "an integer", _parse_int)

    @overload
    def float(self, name: _Str) -> _Float: ...
    @overload
    def float(self, name: _Str, default: D) -> _Float | D: ...
    def float(self, name: _Str, default: Any = _REQUIRED) -> Any:
        return self._get(name, default, "a finite number", _parse_float)

    @overload
    def bool(self, name: _Str) -> _Bool: ...
    @overload
    def bool(self, name: _Str, default: D) -> _Bool | D: ...
    def bool(self, name: _Str, default: Any = _REQUIRED) -> Any:
        return self._get(name, default, "a boolean (true/false, yes/no, 1/0)", _parse_bool)

    @overload
    def json(self, name: _Str) -> Any: ...
    @overload
    def json(self, name: _Str, default: D) -> Any: ...
    def json(self, name: _Str, default: Any = _REQUIRED) -> Any:
        """A structured value (list, object) passed as a JSON string."""
        return self._get(name, default, "JSON", json.loads)

    def _get(self, name: _Str, default: Any, expected: _Str, parse: Callable[[_Str], T]) -> T | Any:
        if name not in self._values:
            if default is _REQUIRED:
                given = ", ".join(sorted(self._values)) or "none"
                raise HyperparameterError(
                    f"hyperparameter {name!r} is required ({expected}) but was not given "
                    f"in {self.source}; given: {given}",
                    name=name, expected=expected,
                )
            return default
        text = self._values[name]
        try:
            return parse(text)
        except ValueError:
            raise HyperparameterError(
                f"hyperparameter {name!r} = {text!r} is not {expected} (from {self.source})",
                name=name, value=text, expected=expected,
            ) from None
