"""The gate as a table: bounds, regressions against a champion, direction,
NaN, missing metrics, and a report that keeps job-controlled text inert."""

from __future__ import annotations

import math

import pytest
from trainforge.errors import GateError
from trainforge.gate import Champion, GateRule, evaluate, md, report

ACC = "validation:accuracy"
CHAMP = Champion("digits@production", 3, {ACC: 0.95, "train:loss": 0.1})
NO_CHAMP = Champion("digits@production", None)


@pytest.mark.parametrize("rule, value, champion, passed", [
    (GateRule(ACC, minimum=0.9), 0.91, None, True),
    (GateRule(ACC, minimum=0.9), 0.9, None, True),                         # the bound itself passes
    (GateRule(ACC, minimum=0.9), 0.8999, None, False),
    (GateRule(ACC, maximum=0.5), 0.6, None, False),
    (GateRule(ACC, max_regression=0.005), 0.946, CHAMP, True),             # 0.004 worse
    (GateRule(ACC, max_regression=0.005), 0.944, CHAMP, False),            # 0.006 worse
    (GateRule(ACC), 0.95, CHAMP, True),                                    # no regression allowed, none made
    (GateRule(ACC), 0.9499, CHAMP, False),
    (GateRule(ACC, minimum=0.9), 0.99, CHAMP, True),
    (GateRule(ACC, minimum=0.99, max_regression=1), 0.98, CHAMP, False),   # every check must pass
    (GateRule(ACC, max_regression=0.0), 0.1, NO_CHAMP, True),              # a first run has nothing to regress from
    (GateRule(ACC, minimum=0.9), math.nan, None, False),
    (GateRule(ACC, max_regression=1.0), math.nan, CHAMP, False),
])
def test_accuracy_rules(rule: GateRule, value: float, champion: Champion | None, passed: bool) -> None:
    assert evaluate(rule, {ACC: value, "train:loss": 0.2}, champion).passed is passed


@pytest.mark.parametrize("loss, passed", [(0.1, True), (0.09, True), (0.104, True), (0.106, False)])
def test_lower_is_better(loss: float, passed: bool) -> None:
    rule = GateRule("train:loss", max_regression=0.005, direction="minimize")
    assert evaluate(rule, {"train:loss": loss}, CHAMP).passed is passed


@pytest.mark.parametrize("metrics, champion, message", [
    ({"train:loss": 0.1}, None, "job never reported metric 'validation:accuracy' (it reported: train:loss)"),
    ({}, None, "(it reported: none)"),
    ({ACC: 0.9}, Champion("digits@2", 2, {"train:loss": 0.1}), "the champion digits@2 (version 2) never reported"),
])
def test_a_missing_metric_is_an_error_not_a_pass(metrics: dict[str, float], champion: Champion | None,
                                                 message: str) -> None:
    with pytest.raises(GateError, match=message.replace("(", r"\(").replace(")", r"\)")):
        evaluate(GateRule(ACC, minimum=0.0), metrics, champion, candidate="job")


@pytest.mark.parametrize("kwargs", [{}, {"minimum": math.inf}, {"max_regression": -0.1},
                                    {"minimum": 0.1, "direction": "up"}])
def test_rules_that_cannot_gate(kwargs: dict[str, object]) -> None:
    with pytest.raises(GateError):
        evaluate(GateRule(ACC, **kwargs), {ACC: 0.5})  # type: ignore[arg-type]


def test_report_compares_with_the_champion_and_is_inert() -> None:
    hostile = "x|y](http://evil)<img src=x>\n# heading"
    result = evaluate(GateRule(ACC, minimum=0.9, max_regression=0.01), {ACC: 0.96, hostile: 1.0}, CHAMP)
    text = report(result, "digits-1", {ACC: 0.96, hostile: 1.0}, curves="curves.png")
    assert "### ✅ Gate passed: digits-1" in text
    assert "| **validation:accuracy** | 0.96 | 0.95 | +0.01 |" in text
    assert "| train:loss | – | 0.1 | – |" in text
    assert "![learning curves of digits-1](curves.png)" in text
    hostile_row = next(line for line in text.splitlines() if line.startswith("| x"))
    assert hostile_row.count("|") - hostile_row.count("\\|") == 5  # the name's | is escaped: still 4 columns
    assert "\\<img" in text and text.count("<img") == text.count("\\<img")  # shown, never HTML
    assert "\\](http" in text and "\n# heading" not in text  # no link: its ] is escaped
    assert "better by 0.01 (at most 0.01 worse allowed)" in text
    assert md("a_b*c") == "a\\_b\\*c"
