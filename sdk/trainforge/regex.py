"""Metric regexes, compiled by RE2: matching time linear in the line's length
whatever the pattern, so a spec cannot stall whoever applies it (the local
supervisor's log pump, the controller's workers) with catastrophic
backtracking. The price is RE2's syntax: no backreferences, no lookarounds,
``\\z`` rather than ``\\Z`` (https://github.com/google/re2/wiki/Syntax).
"""

from __future__ import annotations

from typing import Any

import re2

__all__ = ["compile_metric_regex", "compile_prefilter"]


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False  # RE2 would print every rejected pattern to stderr
    return options


def compile_metric_regex(regex: str) -> Any:
    """The compiled pattern (``search`` / ``groups`` as in ``re``); ValueError
    saying why when RE2 cannot compile it or it has not exactly one capture group."""
    try:
        compiled = re2.compile(regex, _options())
    except re2.error as exc:
        reason = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ValueError(f"RE2 cannot compile it ({reason}); metric regexes run in linear time, so "
                         "backreferences and lookarounds are not available and \\Z is written \\z") from None
    if compiled.groups != 1:
        raise ValueError(f"expected exactly one capture group, found {compiled.groups}")
    return compiled


def compile_prefilter(regexes: list[str]) -> Any | None:
    """One RE2 pattern that matches a line iff one of ``regexes`` does (their
    alternation, captures off): a line that matches none costs one search
    instead of one per regex. None when there is nothing to gain or RE2 will
    not take the alternation (too big): then each regex is searched alone."""
    if len(regexes) < 2:
        return None
    options = _options()
    options.never_capture = True
    try:
        return re2.compile("|".join(f"(?:{regex})" for regex in regexes), options)
    except re2.error:
        return None
