"""Click commands; each builds the client, makes one SDK call and prints."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from .. import client
from ..backends import get_backend
from ..errors import (
    AliasConflict, ConfigError, GateError, ImageNotFound, InvalidModelRef, JobExists, JobFailed, JobNotFound,
    ModelNotFound, NotRegistrable, SpecError, TrainforgeError,
)
from ..spec import Phase, TrainingJob, check_job_name, load_job
from . import render

EXIT_JOB_FAILED, EXIT_INVALID, EXIT_NOT_FOUND, EXIT_BACKEND, EXIT_TIMEOUT = 1, 2, 3, 4, 124
EXIT_GATE_FAILED, EXIT_CONFLICT = 5, 6  # a gate refused the model; an alias moved under a promotion
F = TypeVar("F", bound=Callable[..., Any])

out = Console(highlight=False, soft_wrap=True, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)

# Most specific first: JobExists and ImageNotFound are BackendErrors, but a taken
# name or a missing image (trainer directory) is the user's input to fix.
_EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (JobFailed, EXIT_JOB_FAILED),
    (SpecError, EXIT_INVALID), (ConfigError, EXIT_INVALID), (JobExists, EXIT_INVALID),
    (ImageNotFound, EXIT_INVALID), (InvalidModelRef, EXIT_INVALID), (NotRegistrable, EXIT_INVALID),
    (GateError, EXIT_INVALID),
    (JobNotFound, EXIT_NOT_FOUND), (ModelNotFound, EXIT_NOT_FOUND),
    (AliasConflict, EXIT_CONFLICT),
    (TimeoutError, EXIT_TIMEOUT),
    (TrainforgeError, EXIT_BACKEND),
)


def handle_errors(fn: F) -> F:
    """Map the package's errors to one printable message and an exit code (and nothing else)."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (TrainforgeError, TimeoutError) as exc:
            code = next(c for kind, c in _EXIT_CODES if isinstance(exc, kind))
            err.print(f"error: {render.error_text(exc)}", markup=False)
            sys.exit(code)

    return wrapper  # type: ignore[return-value]


def emit_json(data: Any) -> None:
    # click.echo, not rich: the document must reach scripts byte for byte.
    click.echo(render.to_json(data))


def exit_for(job: TrainingJob) -> None:
    """Exit 1 when the job ended Failed or Stopped (the documented meaning of 1)."""
    if job.status is not None and job.status.phase in (Phase.FAILED, Phase.STOPPED):
        sys.exit(EXIT_JOB_FAILED)


output_option = click.option("-o", "--output", "fmt", type=click.Choice(["text", "json"]), default="text",
                             show_default=True, help="json for scripts")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--backend", type=click.Choice(["process", "container", "kubernetes"]), default=None,
              help="where jobs run (default: trainforge config, else process)")
@click.version_option(package_name="trainforge")
@click.pass_context
def main(ctx: click.Context, backend: str | None) -> None:
    """trainforge: bring-your-own-container training, locally or on Kubernetes."""
    ctx.obj = {"backend": backend}


def _backend(ctx: click.Context, override: str | None = None) -> Any:
    return get_backend(override or ctx.obj["backend"])


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--backend", "backend_name", type=click.Choice(["process", "container", "kubernetes"]), default=None)
@click.option("--name", default=None, help="override metadata.name")
@click.option("--wait/--no-wait", default=False, help="follow the logs and wait for the end")
@click.option("--timeout", type=float, default=None, help="seconds to wait with --wait")
@output_option
@click.pass_context
@handle_errors
def submit(ctx: click.Context, spec: Path, backend_name: str | None, name: str | None, wait: bool,
           timeout: float | None, fmt: str) -> None:
    """Submit the TrainingJob in SPEC (JSON or YAML)."""
    job_doc = load_job(spec)
    if name is not None:
        job_doc.metadata.name = check_job_name(name)
    image = job_doc.spec.image
    if (backend_name or ctx.obj["backend"]) in (None, "process") and not Path(image).is_absolute():
        # A relative trainer directory is relative to the spec file, not the shell.
        candidate = (spec.parent / image)
        if candidate.is_dir():
            job_doc.spec.image = str(candidate.resolve())
    job = client.submit(job_doc, backend=_backend(ctx, backend_name))
    if fmt == "text":
        err.print(f"submitted [bold]{job.name}[/]")
        checkpoints = job_doc.spec.checkpoints
        if checkpoints is not None and job.name not in checkpoints.uri.split("/"):
            err.print(f"note: spec.checkpoints.uri {render.printable(checkpoints.uri)} is shared by every job that "
                      "names it: this one starts with what an earlier one left there (put {job} in it for one "
                      "location per job)", markup=False)
    if wait:
        try:
            if fmt == "text":
                follow_until_finished(job, timeout)
            else:
                job.wait(timeout=timeout, raise_on_failure=False)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; it goes on running (trainforge stop {job.name})") from None
        final = job.describe()
        if fmt == "json":
            emit_json(final.to_dict())
        else:
            out.print("\n".join(render.status_lines(final)))
        if final.status and final.status.phase != Phase.COMPLETED:
            sys.exit(EXIT_JOB_FAILED)
    elif fmt == "json":
        emit_json({"name": job.name})
    else:
        out.print(job.name, markup=False)


def follow_until_finished(job: client.Job, timeout: float | None, to_stderr: bool = False) -> None:
    """Print the job's log while waiting for its end; TimeoutError after
    ``timeout`` seconds even when the trainer is silent (the log is followed on
    a thread, the deadline is kept here)."""
    quit_printing = threading.Event()

    def pump() -> None:
        try:
            for line in job.logs(follow=True):
                if quit_printing.is_set():
                    return
                click.echo(line, err=to_stderr)  # the trainer's output, as `trainforge logs` prints it
        except TrainforgeError:
            pass  # the status printed afterwards says what happened

    printer = threading.Thread(target=pump, name=f"logs-{job.name}", daemon=True)
    printer.start()
    started = time.monotonic()
    try:
        job.wait(timeout=timeout, raise_on_failure=False)
    except BaseException:
        quit_printing.set()
        raise
    # The follow ends by itself once the job has finished; give the last lines a moment.
    left = None if timeout is None else max(timeout - (time.monotonic() - started), 0.0)
    printer.join(timeout=5.0 if left is None else max(left, 5.0))
    quit_printing.set()


@main.command("list")
@output_option
@click.pass_context
@handle_errors
def list_(ctx: click.Context, fmt: str) -> None:
    """List jobs."""
    jobs = client.list_jobs(backend=_backend(ctx))
    if fmt == "json":
        emit_json([j.to_dict() for j in jobs])
    elif not jobs:
        err.print("no jobs")
    else:
        out.print(render.jobs_table(jobs))


@main.command()
@click.argument("name")
@output_option
@click.pass_context
@handle_errors
def status(ctx: click.Context, name: str, fmt: str) -> None:
    """Show a job's status, metrics and artifacts (exit 1 if it ended Failed or Stopped)."""
    job = client.get_job(name, backend=_backend(ctx)).describe()
    if fmt == "json":
        emit_json(job.to_dict())
    else:
        out.print("\n".join(render.status_lines(job)))
    exit_for(job)


@main.command()
@click.argument("name")
@click.option("-f", "--follow", is_flag=True, help="keep printing until the job ends (exit 1 if it ended Failed or Stopped)")
@output_option
@click.pass_context
@handle_errors
def logs(ctx: click.Context, name: str, follow: bool, fmt: str) -> None:
    """Print a job's logs: the trainer's output as it wrote it (-o json: one {"line": ...} per line)."""
    job = client.get_job(name, backend=_backend(ctx))
    for line in job.logs(follow=follow):
        click.echo(render.to_json({"line": line}, indent=None) if fmt == "json" else line)
    if follow:
        exit_for(job.describe())


@main.command()
@click.argument("name")
@click.option("--wait/--no-wait", default=True, help="wait until the job has stopped")
@click.option("--timeout", type=float, default=120.0, show_default=True)
@output_option
@click.pass_context
@handle_errors
def stop(ctx: click.Context, name: str, wait: bool, timeout: float, fmt: str) -> None:
    """Stop a job: SIGTERM, its grace period, then kill."""
    job = client.get_job(name, backend=_backend(ctx))
    job.stop()
    phase = job.wait(timeout=timeout, raise_on_failure=False).phase if wait else job.phase
    if fmt == "json":
        emit_json({"name": job.name, "phase": phase.value})
    else:
        err.print(f"{job.name}: {phase.value}", markup=False)


@main.command()
@click.argument("name")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="write the learning curves to this PNG")
@output_option
@click.pass_context
@handle_errors
def metrics(ctx: click.Context, name: str, plot: Path | None, fmt: str) -> None:
    """Print a job's metric series (timestamp, name, value, step)."""
    from ..metrics import plot_learning_curves, to_frame

    backend = _backend(ctx)
    client.get_job(name, backend=backend)
    records = backend.metrics(name)
    if fmt == "json":
        emit_json([r.__dict__ for r in records])
    elif not records:
        err.print("no metrics recorded")
    else:
        frame = to_frame(records)
        frame["name"] = frame["name"].map(render.printable)  # the trainer names its metrics
        out.print(frame.to_string(index=False), markup=False)
    if plot:
        if not records:
            err.print(f"no plot written: job {name} has no metrics recorded yet", markup=False)
            return
        plot_learning_curves(records, plot)
        err.print(f"learning curves written to {render.printable(plot)}", markup=False)


@main.command()
@output_option
def schema(fmt: str) -> None:
    """Print the JSON Schema of the TrainingJob document (JSON either way)."""
    from ..spec import json_schema

    emit_json(json_schema())


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@output_option
@handle_errors
def validate(spec: Path, fmt: str) -> None:
    """Check the TrainingJob in SPEC without submitting it (no backend is asked)."""
    job = load_job(spec)
    if fmt == "json":
        emit_json(job.to_dict())
    else:
        err.print(f"{render.printable(spec)}: a valid TrainingJob", markup=False)


@main.command()
@click.option("--epochs", type=int, default=15, show_default=True)
@click.option("--example-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="the digits-pytorch example (default: the one in this checkout)")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="the PNG to write (default trainforge-quickstart.png, with --tune trainforge-tuning.png)")
@click.option("--tune", is_flag=True, help="run a small tuning job of the example instead (8 trials, 2 at a time)")
@handle_errors
def quickstart(epochs: int, example_dir: Path | None, plot: Path | None, tune: bool) -> None:
    """Train the digits example end to end on this machine: no cluster, no server."""
    from ..quickstart import run_quickstart

    if tune:
        from ..quickstart_tuning import run_tuning_quickstart

        if run_tuning_quickstart(epochs=min(epochs, 5), plot=plot or Path("trainforge-tuning.png"),
                                 console=err) != "Completed":
            sys.exit(EXIT_JOB_FAILED)
        return
    plot = plot or Path("trainforge-quickstart.png")

    result = run_quickstart(epochs=epochs, example_dir=example_dir, plot=plot, console=err)
    if result.phase != "Completed":
        sys.exit(EXIT_JOB_FAILED)


@main.command()
@click.argument("name")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="where to create it (default: ./NAME)")
@click.option("--base-image", default=None, help="the image the Dockerfile starts FROM")
@handle_errors
def init(name: str, directory: Path | None, base_image: str | None) -> None:
    """Write a ready trainer project: trainer/start.py, Dockerfile, job.json, README."""
    from ..scaffold import init as scaffold

    target = scaffold(name, directory, **({"base_image": base_image} if base_image else {}))
    shown = render.safe(target)
    err.print(f"created {shown}: build it with [bold]trainforge build {shown} -t {name}:latest[/]")
    out.print(str(target), markup=False)


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=Path("."))
@click.option("-t", "--tag", required=True, help="image tag, e.g. registry.example.com/team/mnist:1.2")
@click.option("-f", "--file", "dockerfile", default=None, help="Dockerfile relative to DIRECTORY")
@click.option("--build-arg", "build_args", multiple=True, metavar="KEY=VALUE")
@click.option("--push", is_flag=True, help="push the image after the build")
@click.option("--no-cache", is_flag=True)
@handle_errors
def build(directory: Path, tag: str, dockerfile: str | None, build_args: tuple[str, ...], push: bool,
          no_cache: bool) -> None:
    """Build (and push) a trainer image with Docker or Podman (DOCKER_HOST)."""
    from ..images import build as build_image

    args: dict[str, str] = {}
    for item in build_args:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--build-arg")
        args[key] = value
    built = build_image(directory, tag, dockerfile=dockerfile, build_args=args, push=push, no_cache=no_cache,
                        output=lambda line: err.print(line, markup=False))
    err.print(f"built {built.tag or built.id}" + (f" and pushed {built.digest}" if built.digest else ""),
              markup=False)
    out.print(built.tag or built.id, markup=False)
