"""Housing's pure rules: the stay clock across month ends and leap years, notices, waiting-list order."""

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.housing import domain
from services.housing.domain import InvalidInput, PlaceState, Waiting
from shared.events.codes import PlaceKind, Track, Urgency


@pytest.mark.parametrize(("admitted", "end"), [
    (date(2026, 1, 15), date(2026, 4, 15)),    # plain
    (date(2026, 11, 30), date(2027, 2, 28)),   # across the year, clamped to February's end
    (date(2027, 11, 29), date(2028, 2, 29)),   # lands on a leap day
    (date(2027, 11, 30), date(2028, 2, 29)),   # clamped to the leap day
    (date(2028, 2, 29), date(2028, 5, 29)),    # admitted on a leap day
    (date(2026, 3, 31), date(2026, 6, 30)),    # 31st into a 30-day month
    (date(2026, 5, 31), date(2026, 8, 31)),    # 31st into a 31-day month
    (date(2026, 12, 31), date(2027, 3, 31)),
    (date(2099, 11, 30), date(2100, 2, 28)),   # 2100 is not a leap year
])
def test_an_emergency_stay_ends_three_calendar_months_after_admission(admitted, end):
    assert domain.planned_end(admitted) == end


def test_add_months_clamps_to_the_last_day_of_the_month():
    assert domain.add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert domain.add_months(date(2028, 1, 31), 1) == date(2028, 2, 29)
    assert domain.add_months(date(2026, 8, 31), 6) == date(2027, 2, 28)
    assert domain.add_months(date(2026, 1, 31), 12) == date(2027, 1, 31)


@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2200, 12, 31)))
def test_a_stay_never_lasts_more_than_three_months(admitted):
    end = domain.planned_end(admitted)
    months_later = (end.year - admitted.year) * 12 + end.month - admitted.month
    assert months_later == 3
    assert end.day == admitted.day or (end.day < admitted.day and (end + timedelta(days=1)).day == 1)
    assert 89 <= (end - admitted).days <= 92


def test_stay_ending_is_due_at_each_threshold_and_only_once():
    end = date(2026, 4, 30)
    thresholds = (14, 3)
    assert domain.ending_notices_due(end, date(2026, 4, 15), thresholds, ()) == []
    assert domain.ending_notices_due(end, date(2026, 4, 16), thresholds, ()) == [14]
    assert domain.ending_notices_due(end, date(2026, 4, 20), thresholds, {14}) == []
    assert domain.ending_notices_due(end, date(2026, 4, 27), thresholds, {14}) == [3]
    assert domain.ending_notices_due(end, date(2026, 4, 28), thresholds, {14, 3}) == []
    assert domain.ending_notices_due(end, date(2026, 5, 5), thresholds, {14, 3}) == []  # overdue: nothing new


def test_thresholds_missed_during_an_outage_are_each_announced_once_farthest_first():
    end = date(2026, 4, 30)
    assert domain.ending_notices_due(end, date(2026, 4, 29), (3, 14), ()) == [14, 3]
    assert domain.ending_notices_due(end, date(2026, 4, 29), (14, 7, 3, 0), {14}) == [7, 3]


def test_stay_ending_across_a_leap_february():
    end = domain.planned_end(date(2027, 12, 1))
    assert end == date(2028, 3, 1)
    # 14 days before 1 March 2028 is 16 February (29 days in that February)
    assert domain.ending_notices_due(end, date(2028, 2, 15), (14, 3), ()) == []
    assert domain.ending_notices_due(end, date(2028, 2, 16), (14, 3), ()) == [14]
    # and 3 days before it is 27 February in a leap year...
    assert domain.ending_notices_due(end, date(2028, 2, 26), (14, 3), {14}) == []
    assert domain.ending_notices_due(end, date(2028, 2, 27), (14, 3), {14}) == [3]
    end_2026 = domain.planned_end(date(2025, 12, 1))
    assert end_2026 == date(2026, 3, 1)
    # ...but 26 February in a common year
    assert domain.ending_notices_due(end_2026, date(2026, 2, 25), (3,), ()) == []
    assert domain.ending_notices_due(end_2026, date(2026, 2, 26), (3,), ()) == [3]


def test_an_extension_must_move_the_end_later():
    domain.check_extension(date(2026, 4, 30), date(2026, 5, 31))
    for bad in (date(2026, 4, 30), date(2026, 4, 1)):
        with pytest.raises(InvalidInput) as refused:
            domain.check_extension(date(2026, 4, 30), bad)
        assert refused.value.field == "new_end"


def test_a_discharge_date_lies_within_the_stay_and_not_in_the_future():
    domain.check_discharge_date(date(2026, 1, 1), date(2026, 1, 1), today=date(2026, 2, 1))
    with pytest.raises(InvalidInput, match="before the stay started"):
        domain.check_discharge_date(date(2026, 1, 2), date(2026, 1, 1), today=date(2026, 2, 1))
    with pytest.raises(InvalidInput, match="future"):
        domain.check_discharge_date(date(2026, 1, 1), date(2026, 2, 2), today=date(2026, 2, 1))


def test_the_next_in_line_is_the_most_urgent_then_the_longest_waiting():
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    waiting = [
        Waiting("P-weeks-early", domain.priority_for(Urgency.weeks), t0),
        Waiting("P-days-late", domain.priority_for(Urgency.days), t0 + timedelta(days=3)),
        Waiting("P-days-early", domain.priority_for(Urgency.days), t0 + timedelta(days=1)),
    ]
    assert domain.next_in_line(waiting).person_ref == "P-days-early"
    waiting.append(Waiting("P-immediate", domain.priority_for(Urgency.immediate), t0 + timedelta(days=9)))
    assert domain.next_in_line(waiting).person_ref == "P-immediate"
    same = [Waiting("P-second", 1, t0, entry_id=8), Waiting("P-first", 1, t0, entry_id=7)]
    assert domain.next_in_line(same).person_ref == "P-first"
    assert domain.next_in_line([]) is None


def test_place_states_change_only_along_the_allowed_paths():
    assert domain.can_change(PlaceState.vacant, PlaceState.reserved)
    assert domain.can_change(PlaceState.reserved, PlaceState.occupied)
    assert domain.can_change(PlaceState.reserved, PlaceState.vacant)
    assert domain.can_change(PlaceState.occupied, PlaceState.vacant)
    assert domain.can_change(PlaceState.out_of_service, PlaceState.vacant)
    assert not domain.can_change(PlaceState.occupied, PlaceState.out_of_service)
    assert not domain.can_change(PlaceState.occupied, PlaceState.reserved)
    assert not domain.can_change(PlaceState.reserved, PlaceState.out_of_service)
    assert not domain.can_change(PlaceState.out_of_service, PlaceState.occupied)


def test_a_waitlist_decision_without_a_place_kind_takes_the_kind_of_its_track():
    assert domain.place_kind_for(Track.youth, None) is PlaceKind.emergency
    assert domain.place_kind_for(Track.cadal, None) is PlaceKind.cadal
    assert domain.place_kind_for(Track.youth, PlaceKind.post_shelter) is PlaceKind.post_shelter
    assert domain.place_kind_for(Track.minor, None) is None
    assert domain.place_kind_for(Track.upstream, None) is None
