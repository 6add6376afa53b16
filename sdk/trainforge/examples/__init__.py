"""Small data sets and helpers for the example trainers in containers/examples/."""

from __future__ import annotations

from .digits import write_digits_dataset

__all__ = ["write_digits_dataset"]
