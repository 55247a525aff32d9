"""Intake's eligibility rules, track by track, with the age edges staff worry about."""

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.intake import domain
from services.intake.domain import (
    AssessmentInput, CadalCriteria, OverrideRefused, Situation, age_on, assess, coarse_count, likely_matches, override,
    where_now,
)
from shared.events.codes import Decision, PlaceKind, Track

TODAY = date(2026, 6, 15)


def born_years_ago(years: int, today: date = TODAY, days_later: int = 0) -> date:
    return today.replace(year=today.year - years) + timedelta(days=days_later)


def youth(dob=None, age=None, situation=Situation.excluded, today=TODAY, **kw):
    return assess(AssessmentInput(today=today, situation=situation, date_of_birth=dob, stated_age=age, **kw))


def rule(assessment, name):
    return next(r for r in assessment.rules if r.rule == name)


COMPLETE_CADAL = CadalCriteria(fedasil_designation_ref="FED-2026-0042", lgbtqia_asylum_seeker=True,
                               faces_discrimination=True, mental_health_compatible=True, accepts_house_rules=True)


# --- ages -------------------------------------------------------------------------------------

def test_age_counts_completed_years_and_turns_on_the_birthday_itself():
    assert age_on(date(2008, 6, 15), TODAY) == 18
    assert age_on(date(2008, 6, 16), TODAY) == 17
    assert age_on(date(2000, 6, 15), TODAY) == 26
    assert age_on(date(2000, 6, 16), TODAY) == 25


def test_someone_born_on_a_leap_day_comes_of_age_on_1_march_in_a_common_year():
    leap = date(2008, 2, 29)
    assert age_on(leap, date(2026, 2, 28)) == 17
    assert age_on(leap, date(2026, 3, 1)) == 18
    assert age_on(leap, date(2028, 2, 28)) == 19
    assert age_on(leap, date(2028, 2, 29)) == 20


# --- youth refuge ------------------------------------------------------------------------------

@pytest.mark.parametrize("years", [18, 25])
def test_the_edges_of_the_band_are_inside_it(years):
    result = youth(dob=born_years_ago(years))
    assert (result.decision, result.track, result.place_kind) == (Decision.accommodate, Track.youth, PlaceKind.emergency)
    assert rule(result, "youth_age_band").passed
    assert rule(result, "youth_age_band").inputs["age"] == years
    assert not result.needs_review


def test_eighteen_today_is_an_adult_and_gets_a_place():
    result = youth(dob=born_years_ago(18))
    assert rule(result, "adult").passed and rule(result, "adult").inputs["age"] == 18
    assert result.decision is Decision.accommodate


def test_seventeen_until_tomorrow_is_still_a_minor():
    result = youth(dob=born_years_ago(18, days_later=1))
    assert rule(result, "adult").inputs["age"] == 17
    assert (result.decision, result.track, result.place_kind) == (Decision.refer, Track.minor, None)


def test_twenty_six_today_is_outside_the_band_and_needs_a_staff_reason():
    result = youth(dob=born_years_ago(26))
    assert rule(result, "youth_age_band").passed is False
    assert rule(result, "youth_age_band").inputs["band"] == [18, 25]
    assert result.decision is Decision.decline and result.track is Track.youth and result.needs_review
    assert "case-by-case" in rule(result, "youth_age_band").explanation
    accepted = override(result, Decision.accommodate, None, "known to our team, no other shelter will take her")
    assert (accepted.decision, accepted.place_kind, accepted.needs_review) == (Decision.accommodate, PlaceKind.emergency, False)
    assert rule(accepted, "staff_override").explanation == "known to our team, no other shelter will take her"
    assert rule(accepted, "youth_age_band").passed is False  # the rules stay as they were evaluated


def test_twenty_five_until_tomorrow_is_still_in_the_band():
    assert youth(dob=born_years_ago(26, days_later=1)).decision is Decision.accommodate


def test_a_leap_day_birth_turns_eighteen_on_1_march():
    leap = date(2008, 2, 29)
    assert youth(dob=leap, today=date(2026, 2, 28)).track is Track.minor
    assert youth(dob=leap, today=date(2026, 3, 1)).decision is Decision.accommodate


def test_a_stated_age_is_used_when_the_date_of_birth_is_unknown_and_a_date_of_birth_wins_over_it():
    assert youth(age=20).decision is Decision.accommodate
    assert youth(age=17).track is Track.minor
    both = youth(dob=born_years_ago(17), age=19)
    assert both.track is Track.minor
    assert rule(both, "adult").inputs["age_from"] == "date_of_birth"


def test_the_band_comes_from_settings():
    result = youth(dob=born_years_ago(27), youth_max_age=28)
    assert result.decision is Decision.accommodate


# --- minors ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("situation", list(Situation))
def test_a_minor_is_referred_to_youth_services_with_a_follow_up_and_never_given_a_place(situation):
    result = youth(dob=born_years_ago(16), situation=situation,
                   cadal=COMPLETE_CADAL if situation is Situation.asylum_reception else None)
    assert (result.decision, result.track, result.place_kind) == (Decision.refer, Track.minor, None)
    assert result.refer_to == domain.YOUTH_SERVICES
    assert result.follow_up_on == TODAY + timedelta(days=7)
    assert rule(result, "minor_referral").inputs["follow_up_on"] == (TODAY + timedelta(days=7)).isoformat()
    assert rule(result, "adult").passed is False


@pytest.mark.parametrize("decision", [Decision.accommodate, Decision.waitlist])
def test_no_staff_override_can_give_a_minor_a_place(decision):
    minor = youth(age=17)
    with pytest.raises(OverrideRefused) as refused:
        override(minor, decision, PlaceKind.emergency, "there is a free place tonight")
    assert refused.value.field == "decision"


def test_a_minor_can_be_referred_elsewhere_or_supported_with_a_reason_and_keeps_the_follow_up():
    minor = youth(age=16)
    supported = override(minor, Decision.support_only, None, "parents reconciled, we keep in touch")
    assert supported.decision is Decision.support_only and supported.place_kind is None
    assert supported.follow_up_on == minor.follow_up_on


# --- upstream support ------------------------------------------------------------------------

def test_someone_at_risk_but_not_excluded_gets_support_without_a_place():
    result = youth(dob=born_years_ago(20), situation=Situation.at_risk)
    assert (result.decision, result.track, result.place_kind) == (Decision.support_only, Track.upstream, None)
    assert rule(result, "at_risk_not_excluded").passed


def test_at_risk_outside_the_band_is_case_by_case():
    result = youth(dob=born_years_ago(30), situation=Situation.at_risk)
    assert result.track is Track.upstream and result.decision is Decision.decline and result.needs_review


def test_other_situations_are_referred_to_a_partner():
    result = youth(age=22, situation=Situation.other)
    assert (result.decision, result.track, result.refer_to) == (Decision.refer, Track.none, domain.PARTNER)
    assert rule(result, "within_mandate").passed is False


# --- CADAL ------------------------------------------------------------------------------------------

def cadal(criteria, age=30):
    return assess(AssessmentInput(today=TODAY, situation=Situation.asylum_reception, stated_age=age, cadal=criteria))


def test_cadal_admits_with_all_five_criteria_and_records_the_fedasil_designation():
    result = cadal(COMPLETE_CADAL)
    assert (result.decision, result.track, result.place_kind) == (Decision.accommodate, Track.cadal, PlaceKind.cadal)
    assert [r.rule for r in result.rules if r.rule.startswith("cadal_")] == [f"cadal_{k}" for k, _ in domain.CADAL_CRITERIA]
    assert rule(result, "cadal_fedasil_designation").inputs["fedasil_designation_ref"] == "FED-2026-0042"
    assert "youth_age_band" not in [r.rule for r in result.rules]  # CADAL has no age band


@pytest.mark.parametrize("missing", ["fedasil_designation_ref", "lgbtqia_asylum_seeker", "faces_discrimination",
                                     "mental_health_compatible", "accepts_house_rules"])
def test_cadal_refuses_when_any_one_criterion_is_missing(missing):
    criteria = COMPLETE_CADAL.__class__(**{**COMPLETE_CADAL.__dict__,
                                           missing: None if missing == "fedasil_designation_ref" else False})
    result = cadal(criteria)
    assert (result.decision, result.track, result.place_kind) == (Decision.decline, Track.cadal, None)
    failed = [r.rule for r in result.rules if not r.passed]
    assert len(failed) == 1 and failed[0].startswith("cadal_")
    assert rule(result, failed[0]).explanation.startswith("missing:")
    with pytest.raises(OverrideRefused):
        override(result, Decision.accommodate, PlaceKind.cadal, "we trust the person")


def test_a_blank_designation_reference_does_not_count_and_no_criteria_at_all_declines():
    assert cadal(CadalCriteria(**{**COMPLETE_CADAL.__dict__, "fedasil_designation_ref": "   "})).decision is Decision.decline
    result = cadal(None)
    assert result.decision is Decision.decline and all(not r.passed for r in result.rules if r.rule.startswith("cadal_"))


def test_cadal_places_are_for_the_cadal_track_only():
    with pytest.raises(OverrideRefused) as refused:
        override(youth(age=30), Decision.accommodate, PlaceKind.cadal, "no youth place left")
    assert refused.value.field == "place_kind"


def test_an_override_needs_a_reason():
    with pytest.raises(OverrideRefused) as refused:
        override(youth(age=30), Decision.accommodate, None, "   ")
    assert refused.value.field == "reason"


# --- every input gets exactly one decision --------------------------------------------------------

@given(
    today=st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 12, 31)),
    situation=st.sampled_from(list(Situation)),
    dob=st.one_of(st.none(), st.dates(min_value=date(1900, 1, 1), max_value=date(2000, 1, 1))),
    age=st.one_of(st.none(), st.integers(0, 120)),
    criteria=st.one_of(st.none(), st.builds(CadalCriteria, fedasil_designation_ref=st.one_of(st.none(), st.text(max_size=5)))),
)
def test_any_input_gets_one_decision_and_minors_never_a_place(today, situation, dob, age, criteria):
    result = assess(AssessmentInput(today=today, situation=situation, date_of_birth=dob, stated_age=age, cadal=criteria))
    assert isinstance(result.decision, Decision) and isinstance(result.track, Track)
    assert (result.place_kind is not None) == (result.decision is Decision.accommodate)
    age_used = domain.known_age(AssessmentInput(today=today, situation=situation, date_of_birth=dob, stated_age=age))
    if age_used is None or age_used < 18:
        assert result.track is Track.minor and result.decision is Decision.refer and result.follow_up_on
    if result.track is Track.cadal and result.decision is Decision.accommodate:
        assert all(r.passed for r in result.rules if r.rule.startswith("cadal_"))


# --- matching, follow-up, counters -------------------------------------------------------------------

def known(ref, name, dob=None, phone=None, email=None):
    return domain.Known(ref, domain.name_key(name), dob, domain.phone_key(phone), domain.email_key(email))


def test_a_caller_is_recognised_by_name_and_birth_date_or_by_phone_or_email():
    files = [known("P-1", "Zoë De-Smet", date(2004, 1, 2)), known("P-2", "Sam", phone="+32 470 11 22 33"),
             known("P-3", "Zoe de Smet", date(2001, 5, 5)), known("P-4", "Alex", email="Alex@Example.org")]
    new = known("", "zoe  DE SMET", date(2004, 1, 2), phone="0470/11.22.33", email="alex@example.org ")
    found = {m.person_ref: m.reasons for m in likely_matches(new, files)}
    assert found == {"P-1": ("same_name", "same_date_of_birth"), "P-2": ("same_phone",), "P-4": ("same_email",)}


def test_where_a_person_is_follows_the_latest_event():
    assert where_now([], "accommodate") == "assessed"
    assert where_now([], "refer") == "referred"
    assert where_now([("PersonWaitlisted", {}), ("PersonAdmitted", {})], "accommodate") == "in_stay"
    assert where_now([("PersonAdmitted", {}), ("ReferralMade", {}), ("StayEnding", {})], None) == "stay_ending"
    assert where_now([("PersonAdmitted", {}), ("ReferralMade", {})], None) == "in_stay"
    assert where_now([("PersonAdmitted", {}), ("PersonDischarged", {})], None) == "discharged"


@pytest.mark.parametrize(("n", "shown", "at_least"), [(0, "<5", 0), (1, "<5", 0), (4, "<5", 0), (5, "5+", 5),
                                                      (9, "5+", 5), (42, "40+", 40), (100, "100+", 100)])
def test_small_counts_are_never_shown_exactly(n, shown, at_least):
    assert coarse_count(n) == domain.CoarseCount(at_least, shown)
