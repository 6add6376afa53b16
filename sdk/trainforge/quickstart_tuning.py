"""``trainforge quickstart --tune``: a small tuning job of the digits example
on this machine (TPE over learning rate, batch size and hidden units), with a
live trial table, the best trial, the DataFrame of every trial and a PNG."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from .quickstart import METRICS, find_example, upload_dataset
from .tuning_client import FINISHED, Categorical, Continuous, Integer, submit_tuning_job


def _table(handle_frame: object, title: str) -> Table:
    import pandas as pd

    frame = handle_frame if isinstance(handle_frame, pd.DataFrame) else pd.DataFrame()
    table = Table(box=None, header_style="bold", title=title, title_justify="left")
    for column in ("trial", "lr", "batch", "hidden", "status", "val accuracy"):
        table.add_column(column)
    for _, row in frame.iterrows():
        value = row["FinalObjectiveValue"]
        table.add_row(str(row["TrialNumber"]), f"{row['lr']:.4g}", str(row["batch_size"]), str(row["hidden_units"]),
                      str(row["TrainingJobStatus"]), "-" if value != value else f"{value:.4f}")
    return table


def run_tuning_quickstart(trials: int = 8, parallel: int = 2, epochs: int = 5,
                          plot: Path | None = Path("trainforge-tuning.png"),
                          console: Console | None = None) -> str:
    """Returns the tuning job's final phase."""
    from .tuning.plots import plot_tuning

    console = console or Console(stderr=True)
    started = time.monotonic()
    example = find_example()
    console.rule("[bold]trainforge quickstart: tuning")
    console.print("1/3  staging the digits dataset into the embedded object store")
    data = upload_dataset(console)
    console.print(f"2/3  {trials} trials of [bold]{example.name}[/], {parallel} at a time, TPE (Bayesian)")
    handle = submit_tuning_job(
        str(example), data, "local",
        {"lr": Continuous(0.001, 0.5, "Log"), "batch_size": Categorical([16, 32, 64, 128]),
         "hidden_units": Integer(16, 256, "Log")},
        "validation:accuracy", hparams={"epochs": epochs}, metrics=METRICS, strategy="Bayesian", seed=0,
        max_trials=trials, max_parallel=parallel)
    console.print(f"     tuning job [bold]{handle.name}[/]  (from another shell: trainforge tuning trials {handle.name})")
    with Live(console=console, refresh_per_second=2) as live:
        while True:
            status = handle.status()
            live.update(_table(handle.dataframe(), f"     {status.trials.completed}/{trials} done"))
            if status.phase in FINISHED:
                break
            time.sleep(1.0)
    console.print()
    console.print("3/3  results")
    frame = handle.dataframe()
    console.print(frame[["TrainingJobName", "lr", "batch_size", "hidden_units", "TrainingJobStatus",
                         "FinalObjectiveValue", "TrainingElapsedTimeSeconds"]].to_string(index=False), markup=False)
    best = status.best_trial
    if best is not None:
        console.print(f"best trial [bold]{best.name}[/]: validation accuracy {best.objective:.4f} with "
                      + ", ".join(f"{k}={v}" for k, v in best.hyperparameters.items()))
    if plot is not None and len(frame):
        plot_tuning(handle.describe(), frame, plot)
        console.print(f"tuning plot: {plot}")
    console.print(f"{status.phase} in {time.monotonic() - started:.0f} s; next: "
                  f"[bold]trainforge tuning status {handle.name}[/]")
    return status.phase
