"""``trainforge quickstart``: the digits example, end to end, on this machine.

Puts scikit-learn's bundled handwritten digits into the embedded object store,
runs the example trainer through the process backend with live progress and
per-epoch metrics, and finishes with a summary and a PNG of the learning curves.
"""

from __future__ import annotations

import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .client import submit_job
from .errors import ImageNotFound
from .metrics import plot_learning_curves
from .storage import RichProgress, open_store

DATA_URI = "local://trainforge-quickstart/digits/"
EPOCH_LINE = re.compile(r"epoch=(\d+) train_loss=([0-9.eE+-]+) val_acc=([0-9.]+)")
METRICS = {"validation:accuracy": r"val_acc=([0-9.]+)", "train:loss": r"train_loss=([0-9.eE+-]+)"}


@dataclass(frozen=True)
class QuickstartResult:
    job_name: str
    phase: str
    accuracy: float | None
    model_uri: str | None
    plot: Path | None
    seconds: float


def find_example(example_dir: Path | None = None) -> Path:
    candidates = [example_dir] if example_dir else [
        Path(__file__).resolve().parents[2] / "containers" / "examples" / "digits-pytorch",
        Path.cwd() / "containers" / "examples" / "digits-pytorch",
    ]
    for candidate in candidates:
        if candidate is not None and (candidate / "trainer" / "start.py").is_file():
            return candidate
    raise ImageNotFound("cannot find the digits-pytorch example (containers/examples/digits-pytorch); "
                        "run from a trainforge checkout or pass --example-dir")


def upload_dataset(console: Console) -> dict[str, str]:
    from .examples.digits import write_digits_dataset

    store = open_store(DATA_URI)
    store.ensure_bucket(DATA_URI)
    with tempfile.TemporaryDirectory(prefix="trainforge-digits-") as tmp:
        channels = write_digits_dataset(tmp)
        store.upload_dir(tmp, DATA_URI, progress=RichProgress(console=console))
    return {channel: f"{DATA_URI}{channel}/" for channel in channels}


def run_quickstart(epochs: int = 15, example_dir: Path | None = None,
                   plot: Path | None = Path("trainforge-quickstart.png"),
                   console: Console | None = None) -> QuickstartResult:
    console = console or Console(stderr=True)
    started = time.monotonic()
    example = find_example(example_dir)
    console.rule("[bold]trainforge quickstart")
    console.print(f"1/3  staging the digits dataset into the embedded object store ({DATA_URI})")
    data = upload_dataset(console)
    console.print(f"2/3  training [bold]{example}[/] with the process backend")
    job = submit_job(str(example), data=data, instance="local",
                     hparams={"epochs": epochs, "lr": 0.05, "batch_size": 32},
                     name=None, metrics=METRICS, max_runtime_seconds=1800)
    console.print(f"     job [bold]{job.name}[/]  (follow from another shell: trainforge logs -f {job.name})")

    table = Table("epoch", "train loss", "val accuracy", box=None, header_style="bold")
    with Progress(TextColumn("     {task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} epochs"),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("training", total=epochs)
        for line in job.logs(follow=True):
            match = EPOCH_LINE.search(line)
            if match:
                epoch, loss, acc = match.groups()
                bar.update(task, completed=int(epoch))
                console.print(f"     epoch {int(epoch):>3}  train_loss={float(loss):.4f}  val_acc={float(acc):.4f}")
                table.add_row(epoch, loss, acc)
            elif line.startswith(("Traceback", "error", "ERROR")) or "Error" in line:
                console.print(f"     [red]{line}[/]", markup=False)
    status = job.wait(raise_on_failure=False)

    console.print("3/3  results")
    accuracy = status.final_metrics.get("validation:accuracy")
    written = None
    if plot is not None:
        records = job.backend.metrics(job.name)
        if records:
            plot_learning_curves(records, plot)
            written = plot
    seconds = time.monotonic() - started
    summary = Table(box=None, show_header=False)
    summary.add_row("job", job.name)
    summary.add_row("status", status.phase.value + (f" ({status.failure_reason})" if status.failure_reason else ""))
    if accuracy is not None:
        summary.add_row("validation accuracy", f"{accuracy:.4f}")
    summary.add_row("model", status.artifacts.model or "-")
    if written:
        summary.add_row("learning curves", str(written))
    summary.add_row("wall time", f"{seconds:.1f} s")
    console.print(summary)
    if status.phase.value == "Completed":
        console.print(f"next: [bold]trainforge metrics {job.name}[/], [bold]trainforge status {job.name}[/]")
    return QuickstartResult(job.name, status.phase.value, accuracy, status.artifacts.model, written, seconds)
