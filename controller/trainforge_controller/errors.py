"""The controller's errors: retryable (requeue with backoff) or terminal (recorded)."""

from __future__ import annotations


class ControllerError(Exception):
    """Base of every error the controller raises on purpose."""


class RetryableError(ControllerError):
    """Try again later (the apiserver or object store was unreachable, a conflict)."""


class TerminalError(ControllerError):
    """Retrying cannot help: record it in the job's status."""


class ConfigError(TerminalError):
    """The controller's configuration (e.g. the instance catalog) is invalid."""
