"""Gate a finished job against the champion, and ``retrain``: submit, follow,
gate, register, promote, the flow a CI pipeline runs. The decisions are in
``gate.py`` and ``registry/documents.py``; this module fetches and writes.

Outcomes map onto the CLI's exit codes so a pipeline can branch on them:
promoted/registered 0, the job failed 1, gated out 5, the alias moved under
the promotion 6 (the version stays registered).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .client import Job, submit
from .errors import AliasConflict, GateError, JobFailed
from .gate import Champion, GateResult, GateRule, evaluate
from .registry import ModelRegistry, ModelVersion, data_manifest, parse_ref
from .spec import Phase, TrainingJob

Say = Callable[[str], None]
# The outcomes, numbered as the CLI's exit codes (README "CLI").
JOB_FAILED, GATED_OUT, CONFLICT = 1, 5, 6


@dataclass(frozen=True)
class GateOutcome:
    job: str
    result: GateResult
    metrics: dict[str, float]
    curves: Path | None


def champion_of(registry: ModelRegistry, vs: str) -> Champion:
    """The version ``vs`` names now; an alias not set yet (or a model with no
    versions, on a first run) is a champion without a version."""
    from .errors import ModelNotFound

    ref = parse_ref(vs)
    if ref.alias is not None:
        state = registry.alias(ref.name, ref.alias)
        if state.version is None:
            return Champion(str(ref), None)
        return Champion(str(ref), state.version, registry.get(f"{ref.name}@{state.version}").metrics)
    if ref.version is None:
        try:
            latest = registry.get(ref)
        except ModelNotFound:
            return Champion(str(ref), None)
        return Champion(str(ref), latest.version, latest.metrics)
    found = registry.get(ref)
    return Champion(str(ref), found.version, found.metrics)


def gate_job(job: Job, rule: GateRule, *, registry: ModelRegistry | None = None, vs: str | None = None,
             plot: Path | None = None) -> GateOutcome:
    """Evaluate ``rule`` on the finished ``job`` (JobFailed if it did not complete,
    GateError while it runs), against ``vs`` in ``registry``; the learning curves
    go to ``plot`` when the job recorded metrics."""
    described = job.describe()
    status = described.status
    phase = status.phase if status is not None else Phase.PENDING
    if phase in (Phase.FAILED, Phase.STOPPED):
        raise JobFailed(job.name, phase.value, status.failure_reason if status else None)
    if phase != Phase.COMPLETED:
        raise GateError(f"job {job.name} is still {phase.value}: gate it once it has completed "
                        f"(trainforge submit --wait, or trainforge retrain)")
    assert status is not None
    champion = None
    if vs is not None:
        champion = champion_of(registry if registry is not None else ModelRegistry(), vs)
    result = evaluate(rule, status.final_metrics, champion, candidate=f"job {job.name}")
    curves = None
    if plot is not None:
        records = job.backend.metrics(job.name)
        if records:
            from .metrics import plot_learning_curves

            curves = plot_learning_curves(records, plot, title=job.name)
    return GateOutcome(job.name, result, dict(status.final_metrics), curves)


@dataclass
class RetrainOutcome:
    """What one retrain did, step by step (``to_dict`` is the ``-o json`` document)."""

    job: str
    phase: str
    exit_code: int
    gate: GateOutcome | None = None
    registered: ModelVersion | None = None
    promoted: dict[str, Any] | None = None
    message: str = ""
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "job": self.job, "phase": self.phase, "exitCode": self.exit_code, "message": self.message,
            "gate": None if self.gate is None else self.gate.result.to_dict(),
            "metrics": None if self.gate is None else self.gate.metrics,
            "registered": None if self.registered is None else {
                "name": self.registered.name, "version": self.registered.version,
                "uri": self.registered.uri},
            "promoted": self.promoted,
        }


def retrain(job_doc: TrainingJob, model: str, rule: GateRule, *, backend: Any, registry: ModelRegistry,
            vs: str | None = None, promote_to: str | None = None, timeout: float | None = None,
            follow: Callable[[Job, float | None], None] | None = None, plot: Path | None = None,
            say: Say = lambda line: None) -> RetrainOutcome:
    """Submit ``job_doc``, wait (``follow`` prints its log meanwhile), gate it
    against ``vs`` (default: ``model@promote_to``), register it as ``model`` and
    move ``promote_to`` to it, only if the champion the gate saw is still there."""
    from .registry.documents import check_alias, check_model_name

    check_model_name(model)
    if promote_to is not None:
        check_alias(promote_to)
    if vs is None and promote_to is not None:
        vs = f"{model}@{promote_to}"
    if vs is not None:
        parse_ref(vs)
    data = data_manifest(job_doc, registry.settings)  # the data this run is given, taken before it starts
    job = submit(job_doc, backend=backend)
    say(f"1/4 submitted {job.name} (trainforge logs -f {job.name})")
    if follow is not None:
        follow(job, timeout)
    else:
        job.wait(timeout=timeout, raise_on_failure=False)
    status = job.status()
    if status.phase != Phase.COMPLETED:
        message = f"job {job.name} ended {status.phase.value}" + (
            f": {status.failure_reason}" if status.failure_reason else "")
        say(f"    {message}")
        return RetrainOutcome(job.name, status.phase.value, JOB_FAILED, message=message)
    gated = gate_job(job, rule, registry=registry, vs=vs, plot=plot)
    outcome = RetrainOutcome(job.name, status.phase.value, 0, gate=gated)
    for check in gated.result.checks:
        say(f"2/4 gate {'pass' if check.passed else 'FAIL'}: {check.detail}")
    if not gated.result.passed:
        outcome.exit_code, outcome.message = GATED_OUT, f"gated out: {job.name} is not registered"
        say(f"    {outcome.message}")
        return outcome
    registered = registry.register(job.describe(), model, backend=job.backend.name, data=data)
    outcome.registered = registered
    say(f"3/4 registered {model}@{registered.version}")
    if promote_to is None:
        outcome.message = f"registered {model}@{registered.version}"
        return outcome
    champion = gated.result.champion
    # Gated against the alias it moves: move it only over the champion the gate saw.
    guarded = champion is not None and vs == f"{model}@{promote_to}"
    try:
        if guarded and champion is not None:
            state = registry.promote(model, registered.version, promote_to, expect=champion.version)
        else:
            state = registry.promote(model, registered.version, promote_to)
    except AliasConflict as exc:
        outcome.exit_code = CONFLICT
        outcome.message = f"{exc}; {model}@{registered.version} stays registered, not {promote_to}"
        say(f"    {outcome.message}")
        return outcome
    previous = (state.document or {}).get("history", [{}])[0].get("from")
    outcome.promoted = {"alias": promote_to, "from": previous, "to": state.version}
    outcome.message = f"promoted {model}@{promote_to}: {previous or '-'} -> {state.version}"
    say(f"4/4 {outcome.message}")
    return outcome
