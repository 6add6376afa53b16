"""How much a spec may hand the trainer through its environment. Pure.

Hyperparameters reach the trainer as environment variables (``SM_HPS`` and
``SM_TRAINING_ENV`` each hold all of them as JSON, plus one ``SM_HP_<NAME>``
each) and ``spec.env`` as itself. Linux refuses to start a program when one
variable exceeds 128 KiB or all of them ARG_MAX ("Argument list too long"), and
a Kubernetes object must stay well under 1.5 MiB, so both are bounded here,
at validation, with a message that names the fix, instead of failing at exec.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

MAX_HYPERPARAMETERS_BYTES = 64 * 1024  # all of them, as the JSON of SM_HPS
MAX_ENV_BYTES = 64 * 1024              # all of spec.env, NAME=value in UTF-8

_ADVICE = "pass large data as an input channel, not through the environment"


def hyperparameters_size(hyperparameters: Mapping[str, str]) -> int:
    """Bytes of SM_HPS: JSON with non-ASCII escaped, so never less than UTF-8."""
    return len(json.dumps(dict(hyperparameters), sort_keys=True))


def env_size(env: Mapping[str, str]) -> int:
    return sum(len(f"{name}={value}".encode("utf-8")) + 1 for name, value in env.items())


def _largest(values: Mapping[str, str]) -> str:
    name = max(values, key=lambda key: len(values[key]))
    return f"the largest is {name[:60]!r} with {len(values[name])} characters"


def _check_values(values: Mapping[str, str]) -> None:
    # What exec() cannot put into an environment: NUL bytes, unpaired surrogates.
    for name, value in values.items():
        if "\x00" in value:
            raise ValueError(f"{name[:60]!r}: a NUL character cannot be part of an environment variable")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{name[:60]!r}: not valid Unicode text (an unpaired surrogate)") from None


def check_hyperparameters(hyperparameters: Mapping[str, str]) -> None:
    _check_values(hyperparameters)
    size = hyperparameters_size(hyperparameters)
    if size > MAX_HYPERPARAMETERS_BYTES:
        raise ValueError(f"{size} bytes as JSON, at most {MAX_HYPERPARAMETERS_BYTES} (64 KiB) in all; "
                         f"{_largest(hyperparameters)}; {_ADVICE}")


def check_env(env: Mapping[str, str]) -> None:
    _check_values(env)
    size = env_size(env)
    if size > MAX_ENV_BYTES:
        raise ValueError(f"{size} bytes, at most {MAX_ENV_BYTES} (64 KiB) in all; {_largest(env)}; {_ADVICE}")
