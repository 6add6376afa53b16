"""Five-field cron schedules (minute hour day-of-month month day-of-week, UTC),
as CronJob reads them: ``*``, lists, ranges, steps, ``@hourly``/``@daily``/
``@weekly``/``@monthly``. Pure: no clock is read here.

    schedule = parse_cron("0 3 * * 1")
    schedule.next_after(datetime(2026, 1, 1, tzinfo=timezone.utc))
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))
_MACROS = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@weekly": "0 0 * * 0",
           "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *"}
_SEARCH_LIMIT = timedelta(days=366 * 5)  # "30 2 31 2 *" (February 31st) never comes


@dataclass(frozen=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool
    any_weekday: bool

    def _day_matches(self, t: datetime) -> bool:
        day, weekday = t.day in self.days, (t.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return day and weekday
        return day or weekday  # cron: with both restricted, either one matching is enough

    def matches(self, t: datetime) -> bool:
        return (t.minute in self.minutes and t.hour in self.hours and t.month in self.months
                and self._day_matches(t))

    def next_after(self, t: datetime) -> datetime | None:
        """The first matching minute strictly after ``t`` (None: never, within 5 years)."""
        t = t.astimezone(timezone.utc).replace(second=0, microsecond=0) + timedelta(minutes=1)
        end = t + _SEARCH_LIMIT
        while t < end:
            if t.month not in self.months:
                t = (t.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
            elif not self._day_matches(t):
                t = t.replace(hour=0, minute=0) + timedelta(days=1)
            elif t.hour not in self.hours:
                t = t.replace(minute=0) + timedelta(hours=1)
            elif t.minute not in self.minutes:
                t += timedelta(minutes=1)
            else:
                return t
        return None

    def latest_due(self, since: datetime, now: datetime) -> datetime | None:
        """The latest scheduled time in (since, now], or None: missed runs
        collapse into one, as a CronJob starts only the most recent."""
        latest, t = None, since
        while True:
            following = self.next_after(t)
            if following is None or following > now:
                return latest
            latest, t = following, following


def _field(text: str, name: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if body == "*":
                start, stop = low, high
            elif "-" in body:
                first, _, last = body.partition("-")
                start, stop = int(first), int(last)
            else:
                start = stop = int(body)
                if step_text:
                    stop = high
        except ValueError:
            raise ValueError(f"cron {name} {text!r}: expected numbers, ranges (a-b), lists (a,b) or steps (*/n)") \
                from None
        if step < 1 or not low <= start <= stop <= high:
            raise ValueError(f"cron {name} {text!r}: values must lie in {low}-{high}")
        values.update(range(start, stop + 1, step))
    return frozenset(values)


def parse_cron(text: str) -> Cron:
    """A schedule, or ValueError naming the field that is wrong."""
    expanded = _MACROS.get(text.strip(), text)
    fields = expanded.split()
    if len(fields) != 5:
        raise ValueError(f"cron {text!r}: expected 5 fields (minute hour day month weekday) or @daily etc.")
    parsed = [_field(f, name, low, high) for f, (name, low, high) in zip(fields, _FIELDS)]
    weekdays = frozenset(d % 7 for d in parsed[4])  # 7 is Sunday too
    return Cron(parsed[0], parsed[1], parsed[2], parsed[3], weekdays, fields[2] == "*", fields[4] == "*")
