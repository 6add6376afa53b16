"""``trainforge gate`` and ``trainforge retrain``: what a CI pipeline runs,
thin over trainforge.retraining. Exit codes: 0 passed (retrain: registered,
promoted), 1 the job ended Failed or Stopped, 2 invalid input (including a
metric the job never reported), 5 the gate refused the model, 6 the alias moved
under the promotion, 124 --timeout."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from .. import client
from ..gate import GateRule, report
from ..retraining import GATED_OUT, RetrainOutcome, gate_job, retrain as run_retrain
from ..spec import check_job_name, load_job, parse_job
from . import render
from .commands import (
    EXIT_GATE_FAILED, _backend, emit_json, err, follow_until_finished, handle_errors, main, output_option,
)
from .models import namespace_option, open_registry, registry_option

F = TypeVar("F", bound=Callable[..., Any])


def gate_options(fn: F) -> F:
    """The rule, the same for ``gate`` and ``retrain``."""
    for option in reversed([
        click.option("--metric", required=True, help="the metric gated on, e.g. validation:accuracy"),
        click.option("--min", "minimum", type=float, default=None, help="it must be at least this"),
        click.option("--max", "maximum", type=float, default=None, help="it must be at most this"),
        click.option("--vs", default=None, metavar="NAME[@VERSION|@ALIAS]",
                     help="compare with this registered version (the champion)"),
        click.option("--max-regression", type=float, default=None,
                     help="how much worse than the champion it may be (default 0)"),
        click.option("--direction", type=click.Choice(["maximize", "minimize"]), default="maximize",
                     show_default=True, help="which way is better"),
        click.option("--report", "report_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="append the Markdown report to this file (e.g. $GITHUB_STEP_SUMMARY) instead of stdout"),
        click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="the learning curves PNG linked from the report (default with --report: "
                          "<report>-curves.png beside it)"),
    ]):
        fn = option(fn)
    return fn


def _plot_path(report_file: Path | None, plot: Path | None) -> Path | None:
    if plot is not None or report_file is None:
        return plot
    return report_file.with_name(report_file.stem + "-curves.png")


def _step_summary(report_file: Path | None) -> bool:
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    return report_file is not None and bool(summary) and report_file.resolve() == Path(summary).resolve()


def _curves_note(report_file: Path | None, curves: Path | None) -> list[str]:
    """A step summary cannot show a file of the runner: it names the PNG instead
    (the workflow uploads it as an artifact)."""
    if curves is None or not _step_summary(report_file):
        return []
    from ..gate import md

    return [f"Learning curves: {md(os.path.relpath(curves.resolve()))} (in the run's artifacts)."]


def _link(report_file: Path | None, curves: Path | None) -> str | None:
    """How the report names the PNG: relative to the report's folder where it can."""
    if curves is None or _step_summary(report_file):
        return None
    base = report_file.resolve().parent if report_file is not None else Path.cwd()
    try:
        return os.path.relpath(curves.resolve(), base)
    except ValueError:
        return str(curves.resolve())


def _write_report(text: str, report_file: Path | None, fmt: str) -> None:
    if report_file is None:
        if fmt == "text":
            click.echo(text, nl=False)
        return
    try:
        with report_file.open("a", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise click.FileError(str(report_file), exc.strerror or str(exc)) from None


@main.command()
@click.argument("job")
@gate_options
@registry_option
@namespace_option
@output_option
@click.pass_context
@handle_errors
def gate(ctx: click.Context, job: str, metric: str, minimum: float | None, maximum: float | None, vs: str | None,
         max_regression: float | None, direction: str, report_file: Path | None, plot: Path | None,
         registry_root: str | None, namespace: str, fmt: str) -> None:
    """Check JOB's final metric against bounds and the champion: exit 0 when it passes, 5 when not."""
    rule = GateRule(metric, minimum, maximum, max_regression, direction)  # type: ignore[arg-type]
    handle = client.get_job(job, backend=_backend(ctx))
    registry = open_registry(registry_root, namespace) if vs is not None else None
    outcome = gate_job(handle, rule, registry=registry, vs=vs, plot=_plot_path(report_file, plot))
    text = report(outcome.result, handle.name, outcome.metrics, curves=_link(report_file, outcome.curves),
                  extra=_curves_note(report_file, outcome.curves))
    _write_report(text, report_file, fmt)
    if fmt == "json":
        emit_json({"job": handle.name, **outcome.result.to_dict(), "metrics": outcome.metrics,
                   "curves": None if outcome.curves is None else str(outcome.curves)})
    for check in outcome.result.checks:
        err.print(f"gate {'pass' if check.passed else 'FAIL'}: {render.printable(check.detail)}", markup=False)
    if not outcome.result.passed:
        sys.exit(EXIT_GATE_FAILED)


def _hyperparameters(items: tuple[str, ...]) -> dict[str, str]:
    values = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected NAME=VALUE, got {item!r}", param_hint="--hp")
        values[key] = value
    return values


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--model", required=True, help="the registered model's name")
@gate_options
@click.option("--promote-to", default=None, metavar="ALIAS",
              help="move this alias to the new version (the champion is then NAME@ALIAS unless --vs says otherwise)")
@click.option("--hp", "hparams", multiple=True, metavar="NAME=VALUE", help="override a hyperparameter")
@click.option("--name", default=None, help="override metadata.name")
@click.option("--backend", "backend_name", type=click.Choice(["process", "container", "kubernetes"]), default=None)
@click.option("--timeout", type=float, default=None, help="seconds to wait for the job (exit 124 after)")
@registry_option
@namespace_option
@output_option
@click.pass_context
@handle_errors
def retrain(ctx: click.Context, spec: Path, model: str, metric: str, minimum: float | None,
            maximum: float | None, vs: str | None, max_regression: float | None, direction: str,
            report_file: Path | None, plot: Path | None, promote_to: str | None, hparams: tuple[str, ...],
            name: str | None, backend_name: str | None, timeout: float | None, registry_root: str | None,
            namespace: str, fmt: str) -> None:
    """Submit SPEC, follow it, gate it, register it as --model and move --promote-to to it.

    Exit 0 done, 1 the job failed, 5 gated out (nothing registered), 6 the alias
    moved meanwhile (registered, not promoted), 124 --timeout."""
    rule = GateRule(metric, minimum, maximum, max_regression, direction)  # type: ignore[arg-type]
    job_doc = load_job(spec)
    if name is not None:
        job_doc.metadata.name = check_job_name(name)
    if hparams:  # validated again as a whole document: a bad name or value names spec.hyperparameters
        document = job_doc.to_dict()
        document["spec"]["hyperparameters"] = {**job_doc.spec.hyperparameters, **_hyperparameters(hparams)}
        job_doc = parse_job(document, source=str(spec))
    backend = _backend(ctx, backend_name)
    if backend.name == "process" and not Path(job_doc.spec.image).is_absolute():
        candidate = spec.parent / job_doc.spec.image  # a trainer directory is relative to the spec file
        if candidate.is_dir():
            job_doc.spec.image = str(candidate.resolve())
    registry = open_registry(registry_root, namespace)
    say: Callable[[str], None] = lambda line: err.print(render.printable(line), markup=False)

    def follow(job: client.Job, deadline: float | None) -> None:
        # the trainer's log and each step go to stderr: stdout is the report (-o json: the document)
        follow_until_finished(job, deadline, to_stderr=True)

    try:
        outcome = run_retrain(job_doc, model, rule, backend=backend, registry=registry, vs=vs,
                              promote_to=promote_to, timeout=timeout, follow=follow,
                              plot=_plot_path(report_file, plot), say=say)
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}; it goes on running (nothing was registered)") from None
    if outcome.gate is not None:
        text = report(outcome.gate.result, outcome.job, outcome.gate.metrics,
                      curves=_link(report_file, outcome.gate.curves),
                      extra=_next_steps(outcome) + _curves_note(report_file, outcome.gate.curves))
        _write_report(text, report_file, fmt)
    if fmt == "json":
        emit_json(outcome.to_dict())
    if outcome.exit_code:
        sys.exit(outcome.exit_code)


def _next_steps(outcome: RetrainOutcome) -> list[str]:
    from ..gate import md

    if outcome.exit_code == GATED_OUT:
        return ["Not registered: the gate refused it."]
    lines = []
    if outcome.registered is not None:
        lines.append(f"Registered **{md(outcome.registered.name)}@{outcome.registered.version}**.")
    if outcome.promoted is not None:
        lines.append(f"Promoted `{outcome.promoted['alias']}`: {outcome.promoted['from'] or '–'} → "
                     f"{outcome.promoted['to']}.")
    elif outcome.exit_code:
        lines.append(f"Not promoted: {md(outcome.message)}")
    return lines

