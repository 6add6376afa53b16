"""The tuned ranges as Optuna distributions, and back to the strings a trial's
hyperparameters are on the wire. Pure."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

from optuna.distributions import (
    BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution,
)

from ..spec.tuning import Parameter, ParameterType, Scale


def distribution(parameter: Parameter) -> BaseDistribution:
    """ReverseLog ranges are searched as 1 - x on a log scale (see to_wire)."""
    if parameter.type == ParameterType.CATEGORICAL:
        return CategoricalDistribution(list(parameter.values or []))
    low, high = float(parameter.min or 0), float(parameter.max or 0)
    if parameter.type == ParameterType.INTEGER:
        log = parameter.scale == Scale.LOG
        return IntDistribution(int(low), int(high), log=log, step=1 if log else (parameter.step or 1))
    if parameter.scale == Scale.REVERSE_LOG:
        return FloatDistribution(1.0 - high, 1.0 - low, log=True)
    return FloatDistribution(low, high, log=parameter.scale == Scale.LOG)


def distributions(parameters: Sequence[Parameter]) -> dict[str, BaseDistribution]:
    return {p.name: distribution(p) for p in parameters}


def _format_float(value: float) -> str:
    # Short but exact enough to reproduce the run: 12 significant digits.
    return f"{value:.12g}"


def to_wire(parameters: Sequence[Parameter], values: Mapping[str, Any]) -> dict[str, str]:
    """Optuna's values -> the trial's hyperparameter strings."""
    out: dict[str, str] = {}
    for p in parameters:
        value = values[p.name]
        if p.type == ParameterType.CATEGORICAL:
            out[p.name] = str(value)
        elif p.type == ParameterType.INTEGER:
            out[p.name] = str(int(value))
        elif p.scale == Scale.REVERSE_LOG:
            out[p.name] = _format_float(1.0 - float(value))
        else:
            out[p.name] = _format_float(float(value))
    return out


def from_wire(parameters: Sequence[Parameter], hyperparameters: Mapping[str, str]) -> dict[str, Any] | None:
    """A recorded trial's strings -> Optuna's values; None when one is missing
    or outside today's ranges (a warm-start parent searched another space)."""
    values: dict[str, Any] = {}
    for p in parameters:
        raw = hyperparameters.get(p.name)
        if raw is None:
            return None
        dist = distribution(p)
        try:
            if p.type == ParameterType.CATEGORICAL:
                value: Any = raw
            elif p.type == ParameterType.INTEGER:
                value = int(float(raw))
            else:
                value = float(raw)
                if p.scale == Scale.REVERSE_LOG:
                    value = 1.0 - value
        except ValueError:
            return None
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(dist, FloatDistribution):
            # Strings carry 12 digits: clamp the rounding back into the range.
            if not (dist.low * (1 - 1e-9) - 1e-12 <= value <= dist.high * (1 + 1e-9) + 1e-12):
                return None
            value = min(max(value, dist.low), dist.high)
        elif not dist._contains(dist.to_internal_repr(value)):
            return None
        values[p.name] = value
    return values


def grid(parameters: Sequence[Parameter], seed: int | None = None) -> list[dict[str, str]]:
    """Every point of a grid search, each once; in a seeded order when a seed
    is given (so a truncated grid is a fair sample), else in order."""
    axes = [[(p.name, v) for v in p.grid_values()] for p in parameters]
    points = [dict(combo) for combo in itertools.product(*axes)]
    if seed is not None:
        random.Random(seed).shuffle(points)
    return points
