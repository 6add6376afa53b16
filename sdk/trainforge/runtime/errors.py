"""Errors the runtime helpers raise inside a training container.

    RuntimeContractError            the container contract is not as a trainer expects it
    ├── HyperparameterError         a hyperparameter is missing or has the wrong type (also a ValueError)
    └── ChannelNotFoundError        an input channel was not staged (also a LookupError)

The runtime is stdlib-only (it runs inside user images that may not carry the
SDK's dependencies), so these stand apart from ``trainforge.errors``.
"""

from __future__ import annotations

from pathlib import Path


class RuntimeContractError(Exception):
    """The /opt/ml contract is missing something, or holds something malformed."""


class HyperparameterError(RuntimeContractError, ValueError):
    """A hyperparameter is required but absent, or its value has the wrong type."""

    def __init__(self, message: str, *, name: str, value: str | None = None, expected: str | None = None):
        self.name, self.value, self.expected = name, value, expected
        super().__init__(message)


class ChannelNotFoundError(RuntimeContractError, LookupError):
    """An input channel the trainer asked for was not staged."""

    def __init__(self, channel: str, available: tuple[str, ...], missing_dir: Path | None = None):
        self.channel, self.available, self.missing_dir = channel, available, missing_dir
        have = ", ".join(repr(c) for c in available) if available else "none"
        if missing_dir is None:
            message = f"input channel {channel!r} was not staged; channels present: {have}"
        else:
            message = f"input channel {channel!r} has no directory at {missing_dir}; channels present: {have}"
        super().__init__(message)

    def __str__(self) -> str:  # LookupError/KeyError would quote the message
        return str(self.args[0])
