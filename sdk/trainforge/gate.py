"""The metric gate a model passes before it is registered or promoted, and its
Markdown report. Pure: the candidate's and the champion's metrics come in,
a verdict and a report come out (``trainforge.retraining`` does the I/O).

    rule = GateRule("validation:accuracy", minimum=0.9, max_regression=0.005)
    result = evaluate(rule, {"validation:accuracy": 0.97}, Champion("digits@production", 3, {...}))

A metric the candidate never reported is a GateError, never a pass; a NaN
fails every check it takes part in.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from .errors import GateError

Direction = Literal["maximize", "minimize"]


@dataclass(frozen=True)
class GateRule:
    """What the candidate must reach: bounds on one metric and, against the
    champion, at most ``max_regression`` worse in ``direction``."""

    metric: str
    minimum: float | None = None
    maximum: float | None = None
    max_regression: float | None = None
    direction: Direction = "maximize"

    def __post_init__(self) -> None:
        if self.direction not in ("maximize", "minimize"):
            raise GateError(f"direction must be maximize or minimize, got {self.direction!r}")
        for name, value in (("min", self.minimum), ("max", self.maximum), ("max-regression", self.max_regression)):
            if value is not None and not math.isfinite(value):
                raise GateError(f"--{name} must be a finite number, got {value}")
        if self.max_regression is not None and self.max_regression < 0:
            raise GateError(f"--max-regression must be 0 or more, got {self.max_regression}")


@dataclass(frozen=True)
class Champion:
    """The version the candidate is compared with (``version`` None: the alias is
    not set yet, so there is nothing to regress from)."""

    ref: str
    version: int | None
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class GateResult:
    rule: GateRule
    value: float
    checks: tuple[Check, ...]
    champion: Champion | None
    champion_value: float | None

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, object]:
        return {"passed": self.passed, "metric": self.rule.metric, "value": _num(self.value),
                "champion": None if self.champion is None else {
                    "ref": self.champion.ref, "version": self.champion.version, "value": _num(self.champion_value)},
                "checks": [{"name": c.name, "passed": c.passed, "detail": c.detail} for c in self.checks]}


def _num(value: float | None) -> float | str | None:
    return value if value is None or math.isfinite(value) else str(value)


def _metric(metrics: Mapping[str, float], name: str, whose: str) -> float:
    if name not in metrics:
        known = ", ".join(sorted(metrics)) or "none"
        raise GateError(f"{whose} never reported metric {name!r} (it reported: {known}); "
                        "a gate on a metric that is not there cannot pass")
    return float(metrics[name])


def _change(worse: float) -> str:
    return f"worse by {worse:.6g}" if worse > 0 else f"better by {-worse:.6g}" if worse < 0 else "equal"


def evaluate(rule: GateRule, metrics: Mapping[str, float], champion: Champion | None = None,
             candidate: str = "the job") -> GateResult:
    """Every check of ``rule`` on the candidate's final ``metrics``."""
    value = _metric(metrics, rule.metric, candidate)
    checks: list[Check] = []
    shown = f"{rule.metric} = {value:.6g}"
    if rule.minimum is not None:
        checks.append(Check("min", value >= rule.minimum, f"{shown} (at least {rule.minimum:g})"))
    if rule.maximum is not None:
        checks.append(Check("max", value <= rule.maximum, f"{shown} (at most {rule.maximum:g})"))
    champion_value = None
    if champion is not None:
        if champion.version is None:
            checks.append(Check("champion", True, f"no champion yet ({champion.ref} is not set): nothing to regress from"))
        else:
            champion_value = _metric(champion.metrics, rule.metric, f"the champion {champion.ref} (version "
                                                                    f"{champion.version})")
            allowed = rule.max_regression or 0.0
            worse = champion_value - value if rule.direction == "maximize" else value - champion_value
            checks.append(Check("regression", worse <= allowed,
                                f"{shown} vs {champion_value:.6g} of {champion.ref} (version {champion.version}): "
                                f"{_change(worse)} (at most {allowed:g} worse allowed)"))
    if not checks:
        raise GateError("a gate needs --min, --max or --vs: with none it would pass anything")
    if math.isnan(value):
        checks = [Check(c.name, False, c.detail + " (NaN)") for c in checks]
    return GateResult(rule, value, tuple(checks), champion, champion_value)


# --- the report ------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#+!|~])")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def md(text: object) -> str:
    """Job-controlled text made inert in Markdown: no markup, links, HTML or line breaks."""
    return _MD_SPECIAL.sub(r"\\\1", _CONTROL.sub(" ", str(text)))


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.6g}"


def report(result: GateResult, job: str, metrics: Mapping[str, float], *, curves: str | None = None,
           extra: list[str] | None = None) -> str:
    """A short Markdown report: verdict, every metric against the champion, each
    check, the learning curves (``curves``: a relative image path), and ``extra``
    lines (what retrain did next)."""
    verdict = "passed" if result.passed else "FAILED"
    mark = "✅" if result.passed else "❌"
    champion = result.champion
    lines = [f"### {mark} Gate {verdict}: {md(job)}", ""]
    has_champion = champion is not None and champion.version is not None
    header = "| metric | candidate |" + (f" champion ({md(champion.ref)} = v{champion.version}) | change |"
                                          if has_champion and champion else "")
    lines += [header, "|---|---:|" + ("---:|---:|" if has_champion else "")]
    names = sorted(set(metrics) | (set(champion.metrics) if has_champion and champion else set()))
    for name in names:
        mine = metrics.get(name)
        row = f"| {'**' + md(name) + '**' if name == result.rule.metric else md(name)} | {_fmt(mine)} |"
        if has_champion and champion:
            theirs = champion.metrics.get(name)
            change = "–" if mine is None or theirs is None else f"{mine - theirs:+.6g}"
            row += f" {_fmt(theirs)} | {change} |"
        lines.append(row)
    lines += ["", *[f"- {'pass' if c.passed else '**fail**'}: {md(c.detail)}" for c in result.checks]]
    if extra:
        lines += ["", *extra]
    if curves:
        lines += ["", f"![learning curves of {md(job)}]({curves})"]
    return "\n".join(lines) + "\n"
