"""``trainforge tune`` and ``trainforge tuning ...``: tuning jobs from the
command line, thin over trainforge.tuning_client."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
from rich.live import Live
from rich.table import Table

from .. import tuning_client
from ..spec import load_tuning_job
from ..spec.tuning import TuningJob
from . import render
from .commands import EXIT_JOB_FAILED, EXIT_TIMEOUT, err, handle_errors, main, out, output_option

PHASE_STYLE = {"Completed": "green", "Failed": "red", "Stopped": "yellow", "Running": "cyan", "Pending": "white"}
local_backend = click.option("--backend", "backend_name", type=click.Choice(["process", "container", "kubernetes"]),
                             default=None, help="where trials run (default: trainforge config, else process)")


def _summary(tuning: TuningJob) -> str:
    status = tuning.status
    assert status is not None
    t = status.trials
    best = (f"best {tuning.spec.objective.metric}={status.best_trial.objective:.6g} ({status.best_trial.name})"
            if status.best_trial else "no completed trial yet")
    return (f"[bold]{tuning.name}[/]  [{PHASE_STYLE.get(status.phase, 'white')}]{status.phase}[/]  "
            f"{t.completed} completed, {t.running + t.pending} running, {t.stopped} stopped, "
            f"{t.failed} failed · {best}")


def _trials_table(handle: tuning_client.TuningJobHandle, limit: int | None = None) -> Table:
    frame = handle.dataframe()
    tuning = handle.describe()
    names = [p.name for p in tuning.spec.parameters]
    table = Table(box=None, header_style="bold", title=_summary(tuning), title_justify="left")
    for column in ["TRIAL", "PHASE", *[n.upper() for n in names], tuning.spec.objective.metric.upper(), "SECONDS"]:
        table.add_column(column)
    rows = frame.tail(limit) if limit else frame
    best = tuning.status.best_trial.number if tuning.status and tuning.status.best_trial else None
    for _, row in rows.iterrows():
        phase = row["TrainingJobStatus"]
        label = "EarlyStopped" if phase == "Stopped" and isinstance(row["StopReason"], str) \
            and row["StopReason"].startswith("early stopping") else phase
        objective = row["FinalObjectiveValue"]
        mark = " *" if row["TrialNumber"] == best else ""
        table.add_row(str(row["TrainingJobName"]), f"[{PHASE_STYLE.get(phase, 'white')}]{label}[/]",
                      *[render.safe(str(row[n])) for n in names],
                      "-" if objective != objective else f"{objective:.6g}{mark}",  # NaN: not completed
                      "-" if row["TrainingElapsedTimeSeconds"] != row["TrainingElapsedTimeSeconds"]
                      else f"{row['TrainingElapsedTimeSeconds']:.0f}")
    return table


def _follow(handle: tuning_client.TuningJobHandle, timeout: float | None) -> TuningJob:
    """A live table until the tuning job ends (or ``timeout`` seconds)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    with Live(_trials_table(handle, 20), console=err, refresh_per_second=2) as live:
        while True:
            tuning = handle.describe()
            live.update(_trials_table(handle, 20))
            if tuning.status and tuning.status.phase in tuning_client.FINISHED:
                return tuning
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"tuning job {handle.name} still {tuning.status.phase if tuning.status else '?'} "
                                   f"after {timeout} s")
            time.sleep(1.0)


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@local_backend
@click.option("--name", default=None, help="override metadata.name")
@click.option("--wait/--no-wait", default=False, help="show the trials live and wait for the end")
@click.option("--timeout", type=float, default=None, help="seconds to wait with --wait")
@output_option
@handle_errors
def tune(spec: Path, backend_name: str | None, name: str | None, wait: bool, timeout: float | None,
         fmt: str) -> None:
    """Start the TuningJob in SPEC (JSON or YAML)."""
    document = load_tuning_job(spec)
    if name:
        document = TuningJob.model_validate({**document.to_dict(), "metadata": {
            **document.metadata.model_dump(by_alias=True, exclude_none=True), "name": name}})
    template = document.spec.training_job_template
    if not Path(template.image).is_absolute() and (spec.parent / template.image).is_dir():
        # A relative trainer directory is relative to the spec file, not the shell.
        template.image = str((spec.parent / template.image).resolve())
    handle = tuning_client.submit_tuning(document, backend=tuning_client.tuning_backend(backend_name))
    if fmt == "text":
        err.print(f"submitted tuning job [bold]{handle.name}[/] (trials: trainforge tuning trials {handle.name})")
    if not wait:
        out.print(render.to_json({"name": handle.name}) if fmt == "json" else handle.name, markup=False)
        return
    final = _follow(handle, timeout) if fmt == "text" else _wait(handle, timeout)
    if fmt == "json":
        out.print(render.to_json(final.to_dict()), markup=False)
    else:
        out.print(_summary(final))
    if final.status and final.status.phase == "Failed":
        sys.exit(EXIT_JOB_FAILED)


def _wait(handle: tuning_client.TuningJobHandle, timeout: float | None) -> TuningJob:
    handle.wait(timeout=timeout, raise_on_failure=False)
    return handle.describe()


@main.group()
def tuning() -> None:
    """Inspect and control tuning jobs."""


@tuning.command("list")
@local_backend
@output_option
@handle_errors
def tuning_list(backend_name: str | None, fmt: str) -> None:
    """List tuning jobs."""
    jobs = tuning_client.list_tuning_jobs(backend_name)
    if fmt == "json":
        out.print(render.to_json([j.to_dict() for j in jobs]), markup=False)
        return
    if not jobs:
        err.print("no tuning jobs")
        return
    table = Table(box=None, header_style="bold")
    for column in ("NAME", "PHASE", "STRATEGY", "TRIALS", "RUNNING", "FAILED", "BEST", "AGE"):
        table.add_column(column)
    for job in jobs:
        status = job.status
        assert status is not None
        t = status.trials
        table.add_row(job.name, f"[{PHASE_STYLE.get(status.phase, 'white')}]{status.phase}[/]",
                      job.spec.strategy.type.value, f"{t.completed + t.failed + t.stopped}/{job.spec.limits.max_trials}",
                      str(t.running + t.pending), str(t.failed),
                      f"{status.best_trial.objective:.6g}" if status.best_trial else "-", render.age(status.start_time))
    out.print(table)


@tuning.command("status")
@click.argument("name")
@local_backend
@output_option
@handle_errors
def tuning_status(name: str, backend_name: str | None, fmt: str) -> None:
    """A tuning job's phase, counts and best trial."""
    tuning = tuning_client.get_tuning_job(name, backend_name).describe()
    if fmt == "json":
        out.print(render.to_json(tuning.to_dict()), markup=False)
        return
    status = tuning.status
    assert status is not None
    out.print(_summary(tuning))
    out.print(f"  strategy:  {tuning.spec.strategy.type.value}   objective: {tuning.spec.objective.type.value} "
              f"{tuning.spec.objective.metric}", markup=False)
    out.print(f"  message:   {render.printable(status.message)}", markup=False)
    if status.best_trial:
        hp = ", ".join(f"{k}={v}" for k, v in status.best_trial.hyperparameters.items())
        out.print(f"  best:      {status.best_trial.name}  {render.printable(hp)}", markup=False)
    if status.phase == "Failed":
        sys.exit(EXIT_JOB_FAILED)


@tuning.command("trials")
@click.argument("name")
@local_backend
@click.option("-o", "--output", "fmt", type=click.Choice(["text", "json", "csv"]), default="text", show_default=True)
@handle_errors
def tuning_trials(name: str, backend_name: str | None, fmt: str) -> None:
    """Every trial: hyperparameters, phase, objective, times, cost."""
    handle = tuning_client.get_tuning_job(name, backend_name)
    if fmt == "text":
        out.print(_trials_table(handle))
        return
    frame = handle.dataframe()
    if fmt == "csv":
        out.print(frame.to_csv(index=False), markup=False, end="")
    else:
        out.print(frame.to_json(orient="records", date_format="iso", indent=2), markup=False)


@tuning.command("stop")
@click.argument("name")
@local_backend
@click.option("--wait/--no-wait", default=True, help="wait until its trials have stopped")
@click.option("--timeout", type=float, default=300.0, show_default=True)
@handle_errors
def tuning_stop(name: str, backend_name: str | None, wait: bool, timeout: float) -> None:
    """Stop a tuning job and its running trials."""
    handle = tuning_client.get_tuning_job(name, backend_name)
    handle.stop()
    if wait:
        try:
            status = handle.wait(timeout=timeout, raise_on_failure=False)
        except TimeoutError as exc:
            err.print(f"error: {exc}", markup=False)
            sys.exit(EXIT_TIMEOUT)
        err.print(f"{name}: {status.phase}")


@tuning.command("resume")
@click.argument("name")
@local_backend
@handle_errors
def tuning_resume(name: str, backend_name: str | None) -> None:
    """Start a new supervisor for a tuning job whose supervisor died."""
    tuning_client.tuning_backend(backend_name).resume(name)
    err.print(f"{name}: resumed")


@tuning.command("plot")
@click.argument("name")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@local_backend
@handle_errors
def tuning_plot(name: str, path: Path, backend_name: str | None) -> None:
    """Write a PNG: objective per trial with the best so far, and the
    parameters in parallel coordinates coloured by objective."""
    from ..tuning.plots import plot_tuning

    handle = tuning_client.get_tuning_job(name, backend_name)
    plot_tuning(handle.describe(), handle.dataframe(), path)
    err.print(f"tuning plot written to {path}")
