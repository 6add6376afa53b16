"""``trainforge tensorboard JOB...``: TensorBoard over the logs jobs wrote to
``$TRAINFORGE_TENSORBOARD_DIR`` (synced to ``<artifacts>/tensorboard/``).
TensorBoard is an optional dependency: without it, ``--download DIR`` still
fetches the logs for a TensorBoard installed elsewhere."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import click

from .. import client
from ..artifacts import ArtifactURIs
from ..errors import BackendError, ObjectNotFound
from ..spec import check_job_name
from ..storage import open_store
from .commands import _backend, err, handle_errors, main, out


def fetch_logs(names: tuple[str, ...], backend: object, folder: Path) -> list[tuple[str, Path]]:
    """Each job's synced TensorBoard logs in ``folder/<job>/``; jobs without any are named on stderr."""
    found = []
    for name in names:
        job = client.get_job(name, backend=backend).describe()  # type: ignore[arg-type]
        uri = ArtifactURIs.of(job, backend.default_output()).tensorboard  # type: ignore[attr-defined]
        target = folder / name
        target.mkdir(parents=True, exist_ok=True)
        try:
            files = open_store(uri).download_prefix(uri, str(target)).files
        except ObjectNotFound:
            files = 0
        if files == 0:
            err.print(f"{name}: no TensorBoard logs (the trainer writes them to $TRAINFORGE_TENSORBOARD_DIR)",
                      markup=False)
            continue
        found.append((name, target))
    return found


@main.command()
@click.argument("jobs", nargs=-1, required=True)
@click.option("--download", "download", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="only fetch the logs into DIR/<job>/ (for a TensorBoard installed elsewhere)")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=6006, show_default=True, type=click.IntRange(0, 65535))
@click.option("--backend", "backend_name", type=click.Choice(["process", "container", "kubernetes"]), default=None,
              help="where the jobs ran (default: trainforge --backend, the config, else process)")
@click.pass_context
@handle_errors
def tensorboard(ctx: click.Context, jobs: tuple[str, ...], download: Path | None, host: str, port: int,
                backend_name: str | None) -> None:
    """TensorBoard over the logs of one or several jobs, side by side."""
    for name in jobs:
        check_job_name(name)  # before anything else: exit 2 for a name that is not one
    if download is None and importlib.util.find_spec("tensorboard") is None:
        raise BackendError("TensorBoard is not installed: `pip install tensorboard`, or fetch the logs with "
                           "`trainforge tensorboard --download DIR JOB...` and point your own TensorBoard at DIR")
    backend = _backend(ctx, backend_name)
    if download is not None:
        found = fetch_logs(jobs, backend, download)
        for name, path in found:
            out.print(f"{name}\t{path}", markup=False, highlight=False)
        sys.exit(0 if found else 1)
    with tempfile.TemporaryDirectory(prefix="trainforge-tensorboard-") as folder:
        found = fetch_logs(jobs, backend, Path(folder))
        if not found:
            raise BackendError("none of these jobs has TensorBoard logs")
        spec = ",".join(f"{name}:{path}" for name, path in found)
        command = [sys.executable, "-m", "tensorboard.main", "--logdir_spec", spec, "--host", host, "--port", str(port)]
        try:
            sys.exit(subprocess.call(command, env=os.environ.copy()))
        except KeyboardInterrupt:
            sys.exit(0)
