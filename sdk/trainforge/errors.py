"""The one exception hierarchy of trainforge.

    TrainforgeError
    ├── SpecError                 a job spec is invalid (lists every problem with its field path)
    │   └── InvalidJobName        a job name given to a lookup is not a DNS-1123 label
    ├── ConfigError               trainforge configuration is invalid
    ├── StorageError              object store failures (names the URI)
    │   ├── StorageUnreachable    endpoint refused / unreachable / bad credentials
    │   ├── ObjectNotFound        a URI has no data behind it
    │   ├── IntegrityError        bytes read back differ from bytes written
    │   ├── UnsafeArchive         an archive member is refused (escapes the target, a device, a bomb)
    │   ├── TransferCancelled     a transfer was cancelled on request (a job stopped)
    │   └── PreconditionFailed    a conditional write lost: the object exists / changed since it was read
    ├── BackendError              a backend could not do what was asked
    │   ├── ImageNotFound         container image / trainer source missing
    │   ├── JobExists             a job with that name already exists
    │   ├── EngineUnavailable     container engine / cluster not reachable
    │   ├── ImageBuildError       an image build failed (carries the build log)
    │   └── RegistryError         a push was refused (RegistryAuthError: credentials)
    │       └── RegistryAuthError
    ├── ScaffoldError             ``trainforge init`` cannot create the project
    ├── JobNotFound               no job with that name
    ├── ModelRegistryError        the model registry refused a request
    │   ├── InvalidModelRef       a model name, version or alias that cannot be one (exit 2)
    │   ├── NotRegistrable        the job did not complete or has no model (exit 2)
    │   ├── ModelNotFound         no such model, version or alias (exit 3)
    │   └── AliasConflict         the alias moved while this promotion was deciding (exit 6)
    ├── GateError                 a gate cannot be evaluated: a metric never reported (exit 2)
    └── JobFailed                 Job.wait() saw the job end Failed or Stopped

Errors from dependencies (botocore, docker, kubernetes) are mapped into this tree
at the boundary and chained with ``from`` so the cause stays visible.
"""

from __future__ import annotations

from dataclasses import dataclass


class TrainforgeError(Exception):
    """Base of every error trainforge raises on purpose."""


@dataclass(frozen=True)
class SpecIssue:
    """One problem in a spec: where (dotted path) and what was expected."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class SpecError(TrainforgeError):
    def __init__(self, issues: list[SpecIssue], source: str | None = None):
        self.issues = list(issues)
        self.source = source
        where = f"{source}: " if source else ""
        lines = "\n".join(f"  - {issue}" for issue in self.issues)
        noun = "problem" if len(self.issues) == 1 else "problems"
        super().__init__(f"{where}invalid job spec ({len(self.issues)} {noun}):\n{lines}")


class InvalidJobName(SpecError):
    """A name handed to status/stop/logs/get_job that cannot be a job's name:
    refused before it is joined to any path or URL."""

    def __init__(self, name: str, expected: str):
        self.name = name
        self.issues = [SpecIssue("name", expected)]
        self.source = None
        shown = repr(name) if len(name) <= 80 else f"{name[:60]!r}... ({len(name)} characters)"
        TrainforgeError.__init__(self, f"invalid job name {shown}: expected {expected}")


class ConfigError(TrainforgeError):
    pass


class StorageError(TrainforgeError):
    pass


class StorageUnreachable(StorageError):
    pass


class ObjectNotFound(StorageError):
    pass


class IntegrityError(StorageError):
    pass


class UnsafeArchive(StorageError):
    pass


class TransferCancelled(StorageError):
    pass


class PreconditionFailed(StorageError):
    """A create-only write found the object already there, or a compare-and-swap
    found it changed (or gone) since it was read."""


class BackendError(TrainforgeError):
    pass


class ImageNotFound(BackendError):
    pass


class JobExists(BackendError):
    """The name is taken; the CLI reports it as invalid input (exit 2)."""


class EngineUnavailable(BackendError):
    pass


class ImageBuildError(BackendError):
    """An image build failed; ``log`` holds the whole build output."""

    def __init__(self, message: str, log: str = ""):
        super().__init__(message)
        self.log = log


class RegistryError(BackendError):
    pass


class RegistryAuthError(RegistryError):
    pass


class ScaffoldError(TrainforgeError):
    pass


class JobNotFound(TrainforgeError):
    pass


class ModelRegistryError(TrainforgeError):
    pass


class InvalidModelRef(ModelRegistryError):
    pass


class NotRegistrable(ModelRegistryError):
    pass


class ModelNotFound(ModelRegistryError):
    pass


class AliasConflict(ModelRegistryError):
    pass


class GateError(TrainforgeError):
    pass


class JobFailed(TrainforgeError):
    def __init__(self, name: str, phase: str, reason: str | None):
        self.name, self.phase, self.reason = name, phase, reason
        super().__init__(f"job {name} ended {phase}" + (f": {reason}" if reason else ""))
