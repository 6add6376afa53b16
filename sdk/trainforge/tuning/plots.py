"""The tuning job as pictures: the objective of every trial with the best so
far, and the tuned parameters in parallel coordinates coloured by objective.
Trials that did not complete are drawn as what they are (stopped at their
last value, failed on the axis floor, hollow), never as zero."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from ..spec.tuning import Parameter, ParameterType, Scale, TuningJob

if TYPE_CHECKING:
    import pandas as pd


def _axis_position(parameter: Parameter, values: "pd.Series") -> list[float]:
    """Each value as 0..1 along its axis (log ranges on a log axis)."""
    if parameter.type == ParameterType.CATEGORICAL:
        choices = list(parameter.values or [])
        span = max(len(choices) - 1, 1)
        return [choices.index(str(v)) / span if str(v) in choices else math.nan for v in values]
    low, high = float(parameter.min or 0), float(parameter.max or 0)
    if parameter.scale == Scale.LOG:
        low, high = math.log(low), math.log(high)
        return [(math.log(float(v)) - low) / (high - low) if v is not None and float(v) > 0 else math.nan
                for v in values]
    return [(float(v) - low) / (high - low) if v is not None else math.nan for v in values]


def plot_tuning(tuning: TuningJob, frame: "pd.DataFrame", path: str | Path) -> Path:
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    spec = tuning.spec
    metric = spec.objective.metric
    maximize = spec.objective.type.value == "Maximize"
    figure = Figure(figsize=(11, 4.4), layout="constrained")
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2, width_ratios=[1, 1.35])

    done = frame[frame["TrainingJobStatus"] == "Completed"]
    left.scatter(done["TrialNumber"], done["FinalObjectiveValue"], s=28, color="#1f77b4", label="completed", zorder=3)
    best, xs, ys = None, [], []
    for _, row in frame.sort_values("TrialNumber").iterrows():
        value = row["FinalObjectiveValue"]
        if row["TrainingJobStatus"] == "Completed" and value == value:
            best = value if best is None else (max(best, value) if maximize else min(best, value))
        if best is not None:
            xs.append(row["TrialNumber"])
            ys.append(best)
    if xs:
        left.step(xs, ys, where="post", color="#2ca02c", linewidth=2, label="best so far")
    stopped = frame[frame["TrainingJobStatus"] == "Stopped"]
    if len(stopped):
        # Stopped trials have no final objective: mark them by trial number along the bottom.
        floor = left.get_ylim()[0] if len(done) else 0.0
        left.scatter(stopped["TrialNumber"], [floor] * len(stopped), marker="v", facecolors="none",
                     edgecolors="#ff7f0e", s=36, label="stopped early", zorder=3)
    failed = frame[frame["TrainingJobStatus"] == "Failed"]
    if len(failed):
        floor = left.get_ylim()[0] if len(done) else 0.0
        left.scatter(failed["TrialNumber"], [floor] * len(failed), marker="x", color="#d62728", s=36,
                     label="failed", zorder=3)
    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_xlabel("trial")
    left.set_ylabel(f"{metric} ({'higher' if maximize else 'lower'} is better)")
    left.set_title(f"{tuning.name}: objective per trial")
    left.grid(True, alpha=0.3)
    left.legend(loc="best", fontsize=8, framealpha=0.7)

    names = [p.name for p in spec.parameters]
    values = done["FinalObjectiveValue"]
    cmap = colormaps["viridis" if maximize else "viridis_r"]
    norm = Normalize(vmin=float(values.min()) if len(values) else 0.0,
                     vmax=float(values.max()) if len(values) else 1.0)
    positions = {p.name: dict(zip(frame.index, _axis_position(p, frame[p.name]))) for p in spec.parameters}
    # Best drawn last, on top; trials that did not complete first, underneath.
    order = frame.sort_values("FinalObjectiveValue", ascending=maximize, na_position="first").index
    for index in order:
        row = frame.loc[index]
        ys = [positions[n][index] for n in names]
        if row["TrainingJobStatus"] == "Completed" and row["FinalObjectiveValue"] == row["FinalObjectiveValue"]:
            right.plot(range(len(names)), ys, color=cmap(norm(row["FinalObjectiveValue"])), alpha=0.85, linewidth=1.6)
        else:
            right.plot(range(len(names)), ys, color="#bbbbbb", alpha=0.6, linewidth=1, linestyle="--")
    for i, p in enumerate(spec.parameters):
        right.axvline(i, color="#444444", linewidth=0.8)
        if p.type == ParameterType.CATEGORICAL:
            choices = [str(v) for v in (p.values or [])]
            ticks = [(choice, k / max(len(choices) - 1, 1)) for k, choice in enumerate(choices)]
        else:
            ticks = [(f"{p.min:g}", 0.0), (f"{p.max:g}", 1.0)]
        for label, y in ticks:
            right.annotate(label, (i, y), xytext=(3, 0), textcoords="offset points", fontsize=7, va="center")
    right.set_xticks(range(len(names)), [f"{n}\n({p.scale.value.lower()})" if p.type != ParameterType.CATEGORICAL
                                         else n for n, p in zip(names, spec.parameters)])
    right.set_yticks([])
    right.set_ylim(-0.08, 1.08)
    right.set_title("parameters of every trial (grey dashed: not completed)")
    figure.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=right, label=metric)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, format="png", dpi=110)
    return out
