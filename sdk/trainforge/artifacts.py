"""Where a job's artifacts live, and which prefixes a job may claim. Pure: no I/O.

One layout for every backend and the controller::

    <output>/<namespace>/<job>/output/model.tar.gz
    <output>/<namespace>/<job>/output/output.tar.gz
    <output>/<namespace>/<job>/metrics/metrics.jsonl
    <output>/<namespace>/<job>/logs/<host>-attempt-<n>.log

The namespace is part of every key, so two ``mnist-001`` jobs in two
namespaces never share one. ``tenancy_issues`` refuses specs whose output or
checkpoints would land in another job's tree under the platform's roots; on a
cluster the job's own storage credentials (``storage.sts``) bound the rest.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .errors import SpecIssue
from .spec import TrainingJob
from .uris import StorageURI, parse_uri

# Inside a job's tree: the three folders the platform writes, and the one a
# spec may point its checkpoints at.
PLATFORM_FOLDERS = ("output", "metrics", "logs")
CHECKPOINTS_FOLDER = "checkpoints"


def job_prefix(root: str | StorageURI, namespace: str, job_name: str) -> StorageURI:
    """``<root>/<namespace>/<job>/``: the one place that decides the layout."""
    base = parse_uri(root) if isinstance(root, str) else root
    return base.as_prefix().join(namespace, job_name).as_prefix()


@dataclass(frozen=True)
class ArtifactURIs:
    """Where one job's results go: ``<output>/<namespace>/<job>/...``."""

    root: StorageURI

    @classmethod
    def for_job(cls, output_uri: str, namespace: str, job_name: str) -> "ArtifactURIs":
        return cls(job_prefix(output_uri, namespace, job_name))

    @classmethod
    def of(cls, job: TrainingJob, default_output: str) -> "ArtifactURIs":
        """The job's artifacts: its spec.output, else the backend's default root."""
        return cls.for_job(output_root(job, default_output), job.metadata.namespace, job.name)

    @property
    def model(self) -> str: return str(self.root.join("output", "model.tar.gz"))
    @property
    def output(self) -> str: return str(self.root.join("output", "output.tar.gz"))
    @property
    def metrics(self) -> str: return str(self.root.join("metrics", "metrics.jsonl"))
    @property
    def logs(self) -> str: return str(self.root.join("logs").as_prefix())
    @property
    def tensorboard(self) -> str: return str(self.root.join("tensorboard").as_prefix())

    def log(self, host: str, attempt: int) -> str:
        return str(self.root.join("logs", f"{host}-attempt-{attempt}.log"))


def output_root(job: TrainingJob, default_output: str) -> str:
    return job.spec.output.uri if job.spec.output else default_output


def channel_uri(root: str, namespace: str, job_name: str, channel: str) -> StorageURI:
    """Where local data given to submit_job is uploaded: ``<root>/<namespace>/<job>/<channel>/``."""
    return job_prefix(root, namespace, job_name).join(channel).as_prefix()


def default_checkpoints(job: TrainingJob, default_output: str) -> str:
    """A per-job checkpoint prefix inside the job's own tree, for callers that
    want checkpoints without sharing them: ``<output>/<ns>/<job>/checkpoints/``."""
    return str(ArtifactURIs.of(job, default_output).root.join(CHECKPOINTS_FOLDER).as_prefix())


# -- who may claim which prefix --------------------------------------------------
def within(inner: StorageURI, outer: StorageURI) -> bool:
    """``inner`` names keys only below ``outer`` (same store, both taken as prefixes)."""
    a, b = inner.as_prefix(), outer.as_prefix()
    return (a.scheme, a.bucket) == (b.scheme, b.bucket) and a.key.startswith(b.key)


def overlaps(a: StorageURI, b: StorageURI) -> bool:
    """Some key could be named by both."""
    return within(a, b) or within(b, a)


def tenancy_issues(job: TrainingJob, default_output: str,
                   extra_roots: Iterable[str] = ()) -> list[SpecIssue]:
    """What in ``job`` would write into another job's artifacts.

    The platform's roots are the default output, the job's own output root and
    ``extra_roots``; under each, ``<root>/<ns>/<name>/`` belongs to job
    ``name`` of namespace ``ns``. The job's tree and checkpoints may overlap a
    root only inside the job's own slot there, and checkpoints inside the
    job's tree only in its ``checkpoints/`` folder (never where the platform
    writes the model, metrics and logs)."""
    ns, name = job.metadata.namespace, job.name
    own_root = output_root(job, default_output)
    tree = job_prefix(own_root, ns, name)
    roots = {parse_uri(r).as_prefix() for r in (default_output, own_root, *extra_roots)}
    issues: list[SpecIssue] = []
    default = parse_uri(default_output).as_prefix()
    out = parse_uri(own_root).as_prefix()
    if job.spec.output is not None and out != default and within(out, default):
        issues.append(SpecIssue("spec.output.uri", (
            f"{job.spec.output.uri!r} is inside the platform's artifact root {str(default)!r}, where "
            f"'<namespace>/<job>/' trees belong to other jobs; use {str(default)!r} itself "
            "(or leave spec.output out) or a prefix outside it")))
    else:
        for root in sorted(roots, key=str):
            if overlaps(tree, root) and not within(tree, job_prefix(root, ns, name)):
                issues.append(SpecIssue("spec.output.uri", (
                    f"the job's artifact tree {str(tree)!r} overlaps {str(root)!r}, whose "
                    f"'<namespace>/<job>/' trees belong to other jobs; choose another output root")))
                break
    if job.spec.checkpoints is not None:
        ckpt = parse_uri(job.spec.checkpoints.uri).as_prefix()
        for root in sorted(roots, key=str):
            slot = job_prefix(root, ns, name)
            if not overlaps(ckpt, root):
                continue
            if not within(ckpt, slot):
                issues.append(SpecIssue("spec.checkpoints.uri", (
                    f"{job.spec.checkpoints.uri!r} overlaps the artifact root {str(root)!r}, whose "
                    f"'<namespace>/<job>/' trees belong to other jobs; a job's checkpoints may be "
                    f"there only below its own {str(slot.join(CHECKPOINTS_FOLDER).as_prefix())!r}")))
                break
            if not within(ckpt, slot.join(CHECKPOINTS_FOLDER)):
                issues.append(SpecIssue("spec.checkpoints.uri", (
                    f"{job.spec.checkpoints.uri!r} overlaps where the platform writes this job's "
                    f"model, metrics and logs ({', '.join(f + '/' for f in PLATFORM_FOLDERS)} of "
                    f"{str(slot)!r}); use {str(slot.join(CHECKPOINTS_FOLDER).as_prefix())!r}")))
                break
    return issues
