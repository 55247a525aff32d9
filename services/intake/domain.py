"""Eligibility rules: pure, explainable, and free of any framework.

Every rule returns its name, the inputs it used and whether it passed, so staff can read why
the system decided what it decided.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

from shared.events.codes import Decision, PlaceKind, Track


class Situation(StrEnum):
    excluded = "excluded"  # excluded from home because of orientation and/or gender identity
    at_risk = "at_risk"  # fears a rupture with the home, not yet excluded
    asylum_reception = "asylum_reception"  # asylum seeker facing violence or discrimination in a reception centre
    other = "other"


@dataclass(frozen=True)
class CadalCriteria:
    fedasil_designation_ref: str | None = None
    lgbtqia_asylum_seeker: bool = False
    faces_discrimination: bool = False
    mental_health_compatible: bool = False
    accepts_house_rules: bool = False


@dataclass(frozen=True)
class AssessmentInput:
    today: date
    situation: Situation
    date_of_birth: date | None = None
    stated_age: int | None = None
    cadal: CadalCriteria | None = None
    youth_min_age: int = 18
    youth_max_age: int = 25


@dataclass(frozen=True)
class RuleResult:
    rule: str
    passed: bool
    inputs: dict
    explanation: str


@dataclass(frozen=True)
class Assessment:
    decision: Decision
    track: Track
    place_kind: PlaceKind | None
    rules: tuple[RuleResult, ...] = field(default_factory=tuple)


def age_on(birth: date, today: date) -> int:
    """Completed years; someone born on 29 February has their birthday on 1 March in common years."""
    years = today.year - birth.year
    try:
        birthday = birth.replace(year=today.year)
    except ValueError:
        birthday = date(today.year, 3, 1)
    return years - (1 if today < birthday else 0)


def known_age(data: AssessmentInput) -> int | None:
    if data.date_of_birth is not None:
        return age_on(data.date_of_birth, data.today)
    return data.stated_age


def assess(data: AssessmentInput) -> Assessment:
    age = known_age(data)
    rules: list[RuleResult] = []
    age_inputs = {"date_of_birth": data.date_of_birth.isoformat() if data.date_of_birth else None,
                  "stated_age": data.stated_age, "age": age, "today": data.today.isoformat()}

    adult = age is not None and age >= 18
    rules.append(RuleResult("adult", adult, age_inputs,
                            "18 or older" if adult else "a minor can never be housed: refer to youth services"
                            if age is not None else "age unknown: treated as a possible minor"))
    if not adult:
        return Assessment(Decision.refer, Track.minor, None, tuple(rules))

    if data.situation is Situation.asylum_reception or data.cadal is not None:
        return _assess_cadal(data, rules)

    in_band = data.youth_min_age <= age <= data.youth_max_age
    rules.append(RuleResult("youth_age_band", in_band, {**age_inputs, "band": [data.youth_min_age, data.youth_max_age]},
                            f"within {data.youth_min_age}-{data.youth_max_age}" if in_band
                            else f"outside {data.youth_min_age}-{data.youth_max_age}: case by case, staff may override with a reason"))
    excluded = data.situation is Situation.excluded
    at_risk = data.situation is Situation.at_risk
    rules.append(RuleResult("excluded_for_identity", excluded, {"situation": data.situation.value},
                            "excluded from home because of orientation or identity" if excluded
                            else "not excluded from home"))
    if at_risk:
        rules.append(RuleResult("upstream_support", True, {"situation": data.situation.value},
                                "at risk of rupture: support without a place"))
        return Assessment(Decision.support_only, Track.upstream, None, tuple(rules))
    if excluded and in_band:
        return Assessment(Decision.accommodate, Track.youth, PlaceKind.emergency, tuple(rules))
    if excluded:
        return Assessment(Decision.decline, Track.youth, None, tuple(rules))
    return Assessment(Decision.support_only, Track.none, None, tuple(rules))


CADAL_CRITERIA = (
    ("fedasil_designation", "designation from Fedasil"),
    ("lgbtqia_asylum_seeker", "LGBTQIA+ person seeking asylum"),
    ("faces_discrimination", "confronted with discrimination, exclusion or violence"),
    ("mental_health_compatible", "mental health compatible with community life"),
    ("accepts_house_rules", "accepts the internal regulations and community-life project"),
)


def _assess_cadal(data: AssessmentInput, rules: list[RuleResult]) -> Assessment:
    c = data.cadal or CadalCriteria()
    values = {
        "fedasil_designation": bool(c.fedasil_designation_ref and c.fedasil_designation_ref.strip()),
        "lgbtqia_asylum_seeker": c.lgbtqia_asylum_seeker,
        "faces_discrimination": c.faces_discrimination,
        "mental_health_compatible": c.mental_health_compatible,
        "accepts_house_rules": c.accepts_house_rules,
    }
    for key, label in CADAL_CRITERIA:
        rules.append(RuleResult(f"cadal_{key}", values[key], {key: values[key]},
                                label if values[key] else f"missing: {label}"))
    if all(values.values()):
        return Assessment(Decision.accommodate, Track.cadal, PlaceKind.cadal, tuple(rules))
    return Assessment(Decision.decline, Track.cadal, None, tuple(rules))


def override(assessment: Assessment, decision: Decision, place_kind: PlaceKind | None, reason: str) -> Assessment:
    """A staff override keeps the rules as evaluated and adds the staff decision on top."""
    if not reason or not reason.strip():
        raise ValueError("an override needs a reason")
    if assessment.track is Track.minor and decision in (Decision.accommodate, Decision.waitlist):
        raise ValueError("minors can never be housed")
    if decision is Decision.accommodate and place_kind is None:
        place_kind = assessment.place_kind or (PlaceKind.cadal if assessment.track is Track.cadal else PlaceKind.emergency)
    rules = (*assessment.rules, RuleResult("staff_override", True, {"decision": decision.value}, reason.strip()))
    return Assessment(decision, assessment.track, place_kind if decision is Decision.accommodate else None, rules)
