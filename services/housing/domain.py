"""Pure housing rules: the stay clock and who gets a freed place."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime


def add_months(start: date, months: int) -> date:
    """Same day of month `months` later; clamps to the month's last day (31 Jan + 1 = 28/29 Feb)."""
    month_index = start.month - 1 + months
    year = start.year + month_index // 12
    month = month_index % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return date(year, month, day)


def planned_end(admitted_on: date, months: int = 3) -> date:
    return add_months(admitted_on, months)


@dataclass(frozen=True)
class Waiting:
    person_ref: str
    priority: int  # higher first
    since: datetime


def next_in_line(waiting: list[Waiting]) -> Waiting | None:
    """Highest priority first, then the longest wait."""
    if not waiting:
        return None
    return min(waiting, key=lambda w: (-w.priority, w.since))


URGENCY_PRIORITY = {"immediate": 2, "days": 1, "weeks": 0}
