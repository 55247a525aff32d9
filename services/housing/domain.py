"""Pure housing rules: the stay clock, the states of a place and who gets a freed place.

Nothing here imports FastStream or SQLModel; handlers.py applies these rules inside a unit of work.
"""

from __future__ import annotations

import calendar
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from shared.events.codes import PlaceKind, Track, Urgency


class PlaceState(StrEnum):
    vacant = "vacant"
    reserved = "reserved"  # offered to the next person on the waiting list, waiting for staff to confirm
    occupied = "occupied"
    out_of_service = "out_of_service"


class HousingRefusal(Exception):
    """A command that the rules do not allow; the message names references and codes only."""


class NotFound(HousingRefusal):
    pass


class Conflict(HousingRefusal):
    pass


class InvalidInput(HousingRefusal):
    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


# --- the stay clock ---------------------------------------------------------------

def add_months(start: date, months: int) -> date:
    """Same day of month `months` later; clamps to the month's last day (31 Jan + 1 = 28/29 Feb)."""
    month_index = start.month - 1 + months
    year = start.year + month_index // 12
    month = month_index % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return date(year, month, day)


def planned_end(admitted_on: date, months: int = 3) -> date:
    """An emergency stay ends at most `months` calendar months after admission (rule 5)."""
    return add_months(admitted_on, months)


def days_left(end: date, today: date) -> int:
    return (end - today).days


def ending_notices_due(end: date, today: date, thresholds: Iterable[int], announced: Iterable[int]) -> list[int]:
    """Thresholds (days before `end`) reached by `today` and not announced yet, farthest first.

    Each threshold is announced exactly once per planned end. After an outage several can be
    due at once; each is still announced once, so every downstream step tied to it happens.
    """
    left = days_left(end, today)
    done = set(announced)
    return sorted((t for t in set(thresholds) if left <= t and t not in done), reverse=True)


def check_extension(current_end: date, new_end: date) -> None:
    if new_end <= current_end:
        raise InvalidInput("new_end", f"must be after the current planned end {current_end.isoformat()}")


def check_discharge_date(starts_on: date, ended_on: date, today: date) -> None:
    if ended_on < starts_on:
        raise InvalidInput("ended_on", f"must not be before the stay started ({starts_on.isoformat()})")
    if ended_on > today:
        raise InvalidInput("ended_on", "must not be in the future")


# --- places -------------------------------------------------------------------------

# Who may go where; every other change is refused. Occupied and reserved places cannot be taken
# out of service: discharge, move, or settle the offer first.
TRANSITIONS: dict[PlaceState, frozenset[PlaceState]] = {
    PlaceState.vacant: frozenset({PlaceState.reserved, PlaceState.occupied, PlaceState.out_of_service}),
    PlaceState.reserved: frozenset({PlaceState.occupied, PlaceState.vacant}),
    PlaceState.occupied: frozenset({PlaceState.vacant}),
    PlaceState.out_of_service: frozenset({PlaceState.vacant}),
}


def can_change(current: PlaceState | str, target: PlaceState | str) -> bool:
    return PlaceState(target) in TRANSITIONS[PlaceState(current)]


# --- the waiting list -------------------------------------------------------------

URGENCY_PRIORITY = {Urgency.immediate.value: 2, Urgency.days.value: 1, Urgency.weeks.value: 0}


def priority_for(urgency: Urgency | str) -> int:
    return URGENCY_PRIORITY.get(str(urgency), 0)


@dataclass(frozen=True)
class Waiting:
    person_ref: str
    priority: int  # higher first
    since: datetime
    entry_id: int = 0  # last tie-break: who was recorded first


def line_order(w: Waiting) -> tuple:
    """The waiting-list order: highest priority first, then the longest wait."""
    return (-w.priority, w.since, w.entry_id)


def next_in_line(waiting: list[Waiting]) -> Waiting | None:
    if not waiting:
        return None
    return min(waiting, key=line_order)


def place_kind_for(track: Track, place_kind: PlaceKind | None) -> PlaceKind | None:
    """The kind of place a decision is about; intake's `waitlist` decisions carry the track only."""
    if place_kind is not None:
        return place_kind
    return {Track.youth: PlaceKind.emergency, Track.cadal: PlaceKind.cadal}.get(track)


def tombstone(erasure_ref: str) -> str:
    """What replaces an erased person's reference where a row must stay (capacity, statistics).
    One per erasure, and short enough for a reference column (32 characters)."""
    ref = f"ERASED-{erasure_ref}"
    return ref if len(ref) <= 32 else "ERASED-" + hashlib.sha256(erasure_ref.encode()).hexdigest()[:25]
