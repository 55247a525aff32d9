"""Eligibility rules and other pure decisions of intake, free of any framework.

Every rule returns its name, the inputs it used and whether it passed, so staff can read why
the system decided what it decided. The console puts each rule into words in the staff
member's language; `explanation` here is the English wording kept with the record.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from enum import StrEnum

from shared.events.codes import Decision, PlaceKind, Track


class Situation(StrEnum):
    excluded = "excluded"  # excluded from home because of orientation and/or gender identity
    at_risk = "at_risk"  # fears a rupture with the home, not yet excluded
    asylum_reception = "asylum_reception"  # asylum seeker facing violence or discrimination in a reception centre
    other = "other"


# Where a referral goes, as a code other services can act on (never free text).
YOUTH_SERVICES = "youth_services"
PARTNER = "partner"


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
    minor_follow_up_days: int = 7


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
    # The rules could not settle it (outside the age band): a staff member decides, with a reason.
    needs_review: bool = False
    follow_up_on: date | None = None
    refer_to: str | None = None


class OverrideRefused(ValueError):
    """A staff decision the rules of the house never allow (e.g. housing a minor)."""

    def __init__(self, field: str, reason: str):
        super().__init__(reason)
        self.field = field
        self.reason = reason


ADULT_AGE = 18


def age_on(birth: date, today: date) -> int:
    """Completed years. Someone born on 29 February has their birthday on 1 March in common years."""
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
    """Exactly one decision for every input: the tracks below are exhaustive."""
    age = known_age(data)
    age_inputs = {
        "date_of_birth": data.date_of_birth.isoformat() if data.date_of_birth else None,
        "stated_age": data.stated_age,
        "age": age,
        "age_from": "date_of_birth" if data.date_of_birth is not None else "stated_age",
        "today": data.today.isoformat(),
    }
    rules: list[RuleResult] = []

    adult = age is not None and age >= ADULT_AGE
    if age is None:
        explanation = "age unknown: treated as a possible minor"
    elif adult:
        explanation = f"aged {age}: an adult"
    else:
        explanation = f"aged {age}: a minor can never be given a place"
    rules.append(RuleResult("adult", adult, age_inputs, explanation))
    if not adult:
        follow_up_on = data.today + timedelta(days=data.minor_follow_up_days)
        rules.append(RuleResult(
            "minor_referral", True,
            {"refer_to": YOUTH_SERVICES, "follow_up_on": follow_up_on.isoformat(), "days": data.minor_follow_up_days},
            f"referred to youth services, follow-up on {follow_up_on.isoformat()}",
        ))
        return Assessment(Decision.refer, Track.minor, None, tuple(rules),
                          follow_up_on=follow_up_on, refer_to=YOUTH_SERVICES)

    if data.situation is Situation.asylum_reception:
        return _assess_cadal(data, rules)
    if data.situation is Situation.other:
        rules.append(RuleResult("within_mandate", False, {"situation": data.situation.value},
                                "not excluded or at risk because of orientation or identity, "
                                "nor an asylum seeker in a reception centre: refer to a partner"))
        return Assessment(Decision.refer, Track.none, None, tuple(rules), refer_to=PARTNER)

    band = [data.youth_min_age, data.youth_max_age]
    in_band = data.youth_min_age <= age <= data.youth_max_age
    rules.append(RuleResult(
        "youth_age_band", in_band, {**age_inputs, "band": band},
        f"aged {age}, within {band[0]}-{band[1]}" if in_band
        else f"aged {age}, outside {band[0]}-{band[1]}: a case-by-case decision that needs a staff reason",
    ))
    if data.situation is Situation.at_risk:
        rules.append(RuleResult("at_risk_not_excluded", True, {"situation": data.situation.value},
                                "at risk of rupture, not yet excluded: support without a place"))
        if in_band:
            return Assessment(Decision.support_only, Track.upstream, None, tuple(rules))
        return Assessment(Decision.decline, Track.upstream, None, tuple(rules), needs_review=True)

    rules.append(RuleResult("excluded_for_identity", True, {"situation": data.situation.value},
                            "excluded from home because of orientation or identity"))
    if in_band:
        return Assessment(Decision.accommodate, Track.youth, PlaceKind.emergency, tuple(rules))
    return Assessment(Decision.decline, Track.youth, None, tuple(rules), needs_review=True)


CADAL_CRITERIA = (
    ("fedasil_designation", "a designation from Fedasil"),
    ("lgbtqia_asylum_seeker", "an LGBTQIA+ person seeking asylum"),
    ("faces_discrimination", "confronted with discrimination, exclusion or violence"),
    ("mental_health_compatible", "mental health compatible with community life"),
    ("accepts_house_rules", "accepts the internal regulations and community-life project"),
)


def _assess_cadal(data: AssessmentInput, rules: list[RuleResult]) -> Assessment:
    c = data.cadal or CadalCriteria()
    designation = (c.fedasil_designation_ref or "").strip() or None
    values = {
        "fedasil_designation": designation is not None,
        "lgbtqia_asylum_seeker": c.lgbtqia_asylum_seeker,
        "faces_discrimination": c.faces_discrimination,
        "mental_health_compatible": c.mental_health_compatible,
        "accepts_house_rules": c.accepts_house_rules,
    }
    for key, label in CADAL_CRITERIA:
        inputs = {key: values[key]}
        if key == "fedasil_designation":
            inputs["fedasil_designation_ref"] = designation
        rules.append(RuleResult(f"cadal_{key}", values[key], inputs, label if values[key] else f"missing: {label}"))
    if all(values.values()):
        return Assessment(Decision.accommodate, Track.cadal, PlaceKind.cadal, tuple(rules))
    return Assessment(Decision.decline, Track.cadal, None, tuple(rules))


def cadal_complete(assessment: Assessment) -> bool:
    cadal_rules = [r for r in assessment.rules if r.rule.startswith("cadal_")]
    return len(cadal_rules) == len(CADAL_CRITERIA) and all(r.passed for r in cadal_rules)


def override(assessment: Assessment, decision: Decision, place_kind: PlaceKind | None, reason: str) -> Assessment:
    """A staff decision keeps the rules as evaluated and adds the staff member's reason on top.

    The rules of the house still hold: a minor never gets a place, CADAL never admits without
    all five criteria, and a CADAL place is for the CADAL track only.
    """
    reason = (reason or "").strip()
    if not reason:
        raise OverrideRefused("reason", "a staff decision needs a reason")
    housed = decision in (Decision.accommodate, Decision.waitlist)
    if assessment.track is Track.minor and housed:
        raise OverrideRefused("decision", "a minor can never be given a place")
    if assessment.track is Track.cadal and housed and not cadal_complete(assessment):
        raise OverrideRefused("decision", "CADAL needs all five admission criteria recorded")
    if housed:
        default_kind = PlaceKind.cadal if assessment.track is Track.cadal else PlaceKind.emergency
        place_kind = place_kind or assessment.place_kind or default_kind
        if (place_kind is PlaceKind.cadal) != (assessment.track is Track.cadal):
            raise OverrideRefused("place_kind", "CADAL places are for the CADAL track only")
    else:
        place_kind = None
    rule = RuleResult("staff_override", True,
                      {"decision": decision.value, "previous_decision": assessment.decision.value,
                       "place_kind": place_kind.value if place_kind else None},
                      reason)
    return replace(
        assessment,
        decision=decision,
        place_kind=place_kind,
        rules=(*[r for r in assessment.rules if r.rule != "staff_override"], rule),
        needs_review=False,
        refer_to=(assessment.refer_to or PARTNER) if decision is Decision.refer else None,
    )


# --- case files: telling whether a new call comes from someone already known ----------------

def name_key(name: str) -> str:
    """Accents, case and punctuation removed: 'Zoë  De-Smet' and 'zoe de smet' compare equal."""
    decomposed = unicodedata.normalize("NFKD", name)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()
    return " ".join(re.split(r"[^0-9a-z]+", plain)).strip()


def phone_key(phone: str | None) -> str | None:
    """The last nine digits: '+32 470 99 88 77' and '0470/99.88.77' compare equal."""
    if not phone:
        return None
    digits = re.sub(r"\D", "", phone)
    return digits[-9:] if len(digits) >= 6 else None


def email_key(email: str | None) -> str | None:
    return email.strip().casefold() if email else None


@dataclass(frozen=True)
class Known:
    """What intake already holds about a case file, reduced to the keys that can match."""

    person_ref: str
    name_key: str
    date_of_birth: date | None
    phone_key: str | None
    email_key: str | None


@dataclass(frozen=True)
class Match:
    person_ref: str
    reasons: tuple[str, ...]


def likely_matches(new: Known, known: list[Known]) -> list[Match]:
    """Case files that probably belong to the same person; staff confirm before anything is linked.

    Same name with a different date of birth is not a match; same name alone (a birth date
    missing on either side) is, and so is the same phone number or e-mail address.
    """
    found = []
    for k in known:
        reasons = []
        same_name = bool(new.name_key) and k.name_key == new.name_key
        both_dates = new.date_of_birth is not None and k.date_of_birth is not None
        if same_name and not (both_dates and k.date_of_birth != new.date_of_birth):
            reasons.append("same_name")
            if both_dates:
                reasons.append("same_date_of_birth")
        if new.phone_key and k.phone_key == new.phone_key:
            reasons.append("same_phone")
        if new.email_key and k.email_key == new.email_key:
            reasons.append("same_email")
        if reasons:
            found.append(Match(k.person_ref, tuple(reasons)))
    return sorted(found, key=lambda m: -len(m.reasons))


# --- follow-up: where a person is now, from the other services' events -------------------

def where_now(events: list[tuple[str, dict]], decision: str | None) -> str:
    """The person's current position, from timeline events in the order they happened."""
    position = {
        "PersonAdmitted": "in_stay", "StayExtended": "in_stay", "PersonMoved": "in_stay", "StayEnding": "stay_ending",
        "PersonDischarged": "discharged", "PersonWaitlisted": "waitlisted", "ReferralMade": "referred",
    }
    current = None
    for event_type, _details in events:
        new = position.get(event_type)
        if new is None:
            continue
        # A referral made during a stay does not move the person out of their place.
        if new == "referred" and current in ("in_stay", "stay_ending"):
            continue
        current = new
    if current is not None:
        return current
    return {"refer": "referred", "support_only": "supported", "decline": "declined"}.get(decision or "", "assessed")


# --- public counters: small counts never single anyone out -----------------------------------

SMALL_COUNT = 5


@dataclass(frozen=True)
class CoarseCount:
    at_least: int
    shown: str  # "<5" for fewer than five (zero included), else a multiple of five followed by "+"


def coarse_count(n: int, threshold: int = SMALL_COUNT) -> CoarseCount:
    """Counts under `threshold` are all shown alike; larger ones are rounded down to a multiple of it,
    so one new person rarely changes what is shown and is never told apart."""
    if n < threshold:
        return CoarseCount(0, f"<{threshold}")
    floor = n - n % threshold
    return CoarseCount(floor, f"{floor}+")
