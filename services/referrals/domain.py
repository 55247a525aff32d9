"""Referrals' pure rules: service categories, the referral's closed loop, the consent gate,
opening hours and the directory search. No framework, no store: plain data in, plain data out.

The directory is held as HSDS 3 documents (plain dicts, see directory.py); this module only reads them.
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from enum import StrEnum
from zoneinfo import ZoneInfo

from shared.events.codes import Need

# --- vocabularies ----------------------------------------------------------------------------

CATEGORY_TAXONOMY = "refuge-service-category"

# code -> labels (en, fr, nl). The category of a service is an HSDS attribute pointing at one of
# these terms; the codes travel on the broker, the labels never need to.
CATEGORIES: dict[str, dict[str, str]] = {
    "legal_aid": {"en": "Legal aid", "fr": "Aide juridique", "nl": "Juridische hulp"},
    "psychosocial_support": {"en": "Psycho-social support", "fr": "Soutien psychosocial",
                             "nl": "Psychosociale ondersteuning"},
    "language_integration": {"en": "Language and integration courses", "fr": "Cours de langue et d'intégration",
                             "nl": "Taal- en inburgeringscursussen"},
    "shelter": {"en": "Shelter", "fr": "Hébergement", "nl": "Opvang"},
    "detention_visits": {"en": "Detention visits", "fr": "Visites en centres fermés",
                         "nl": "Bezoeken in gesloten centra"},
    "fgm_support": {"en": "FGM support", "fr": "Soutien en matière de MGF", "nl": "Ondersteuning bij VGV"},
    "youth_services": {"en": "Youth services", "fr": "Aide à la jeunesse", "nl": "Jeugdhulp"},
    "housing_search": {"en": "Housing search", "fr": "Recherche de logement", "nl": "Hulp bij het zoeken naar een woning"},
    "health": {"en": "Health", "fr": "Santé", "nl": "Gezondheid"},
    "social_assistance": {"en": "Social and administrative assistance", "fr": "Aide sociale et administrative",
                          "nl": "Sociale en administratieve hulp"},
    "family_reunification": {"en": "Family reunification", "fr": "Regroupement familial", "nl": "Gezinshereniging"},
    "employment_training": {"en": "Job search and training", "fr": "Recherche d'emploi et formation",
                            "nl": "Werk zoeken en opleiding"},
    "material_aid": {"en": "Material aid", "fr": "Aide matérielle", "nl": "Materiële hulp"},
    "information_advocacy": {"en": "Information and advocacy", "fr": "Information et plaidoyer",
                             "nl": "Informatie en beleidswerk"},
}

REGIONS: dict[str, dict[str, str]] = {
    "brussels": {"en": "Brussels", "fr": "Bruxelles", "nl": "Brussel"},
    "wallonia": {"en": "Wallonia", "fr": "Wallonie", "nl": "Wallonië"},
    "flanders": {"en": "Flanders", "fr": "Flandre", "nl": "Vlaanderen"},
}

# The need recorded in the case file -> the category of partner that answers it.
NEED_CATEGORY: dict[Need, str] = {
    Need.accommodation: "shelter",
    Need.administrative: "social_assistance",
    Need.legal: "legal_aid",
    Need.social: "social_assistance",
    Need.physical_health: "health",
    Need.mental_health: "psychosocial_support",
    Need.housing_search: "housing_search",
    Need.job_training_education: "employment_training",
}


class Status(StrEnum):
    pending = "pending"
    accepted = "accepted"
    declined = "declined"
    completed = "completed"
    revoked = "revoked"
    expired = "expired"


class Action(StrEnum):
    accept = "accept"
    decline = "decline"
    complete = "complete"
    revoke = "revoke"
    expire = "expire"


class Outcome(StrEnum):
    got_help = "got_help"
    not_successful = "not_successful"


# Reasons are codes, so they may travel on the broker; no free text from partners.
DECLINE_REASONS = ("no_capacity", "not_eligible", "outside_area", "not_our_service", "other")
UNSUCCESSFUL_REASONS = ("person_did_not_come", "person_declined", "not_eligible", "no_capacity", "other")
REVOKE_REASONS = ("need_met_elsewhere", "consent_withdrawn", "person_left", "made_in_error", "other")

# (current status, action) -> next status; who may act is decided by ACTORS.
TRANSITIONS: dict[tuple[Status, Action], Status] = {
    (Status.pending, Action.accept): Status.accepted,
    (Status.pending, Action.decline): Status.declined,
    (Status.accepted, Action.complete): Status.completed,
    (Status.pending, Action.revoke): Status.revoked,
    (Status.accepted, Action.revoke): Status.revoked,
    (Status.pending, Action.expire): Status.expired,
}
ACTORS: dict[Action, str] = {
    Action.accept: "partner", Action.decline: "partner", Action.complete: "partner",
    Action.revoke: "staff", Action.expire: "system",
}
OPEN_STATUSES = (Status.pending, Status.accepted)


class TransitionRefused(Exception):
    """The referral is not in a state where this action makes sense (e.g. declining an accepted one)."""

    def __init__(self, status: str, action: str):
        super().__init__(f"a {status} referral does not allow '{action}'")
        self.status = status
        self.action = action


@dataclass(frozen=True)
class Change:
    status: Status
    reason_code: str | None = None
    outcome: Outcome | None = None


def next_status(status: str, action: Action, *, reason_code: str | None = None,
                outcome: str | None = None) -> Change:
    """The closed loop: which action may follow which status, and which reason each one needs."""
    target = TRANSITIONS.get((Status(status), action))
    if target is None:
        raise TransitionRefused(status, action.value)
    if action is Action.decline:
        if reason_code not in DECLINE_REASONS:
            raise ValueError(f"a decline needs a reason among {', '.join(DECLINE_REASONS)}")
        return Change(target, reason_code=reason_code)
    if action is Action.complete:
        if outcome not in Outcome.__members__:
            raise ValueError("a completed referral needs an outcome: got_help or not_successful")
        result = Outcome(outcome)
        if result is Outcome.not_successful and reason_code not in UNSUCCESSFUL_REASONS:
            raise ValueError(f"an unsuccessful outcome needs a reason among {', '.join(UNSUCCESSFUL_REASONS)}")
        return Change(target, reason_code=reason_code if result is Outcome.not_successful else None, outcome=result)
    if action is Action.revoke:
        if reason_code is not None and reason_code not in REVOKE_REASONS:
            raise ValueError(f"a revocation reason is one of {', '.join(REVOKE_REASONS)}")
        return Change(target, reason_code=reason_code)
    if action is Action.expire:
        return Change(target, reason_code="no_answer")
    return Change(target)


# --- consent gate (rule 8) ---------------------------------------------------------------------


@dataclass(frozen=True)
class ConsentView:
    consent_ref: str
    partner_ref: str
    purpose: str
    expires_on: date | None = None
    withdrawn: bool = False


def purpose_covers(purpose: str, category: str) -> bool:
    """Intake records a purpose per consent: `referral` (any referral to that partner), the
    category code itself (`housing_search`) or `referral:<category>`."""
    purpose = purpose.strip().lower()
    return purpose in ("referral", category, f"referral:{category}")


def covering_consent(consents: list[ConsentView], partner_ref: str, category: str, today: date) -> ConsentView | None:
    for consent in consents:
        if (consent.partner_ref == partner_ref and not consent.withdrawn and purpose_covers(consent.purpose, category)
                and (consent.expires_on is None or today <= consent.expires_on)):
            return consent
    return None


def may_share(*, share_requested: bool, consent: ConsentView | None, override: bool, withdrawn_since_override: bool) -> bool:
    """Personal data goes to a partner only with the person's consent for that partner and
    purpose, or a staff override; a withdrawal received after the override stops it again."""
    if not share_requested:
        return False
    if consent is not None:
        return True
    return override and not withdrawn_since_override


# --- opening hours (HSDS schedules, RFC 5545 subset) -------------------------------------------

DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _parse_time(value: str) -> tuple[time, timezone | None]:
    """'09:30', '09:30:00', '09:30Z', '09:30+01:00' -> (time, offset or None for local time)."""
    value = value.strip()
    offset = None
    if value.endswith("Z"):
        value, offset = value[:-1], timezone.utc
    elif len(value) > 5 and value[-6] in "+-" and value[-3] == ":":
        sign = 1 if value[-6] == "+" else -1
        hours, minutes = int(value[-5:-3]), int(value[-2:])
        offset = timezone(sign * timedelta(hours=hours, minutes=minutes))
        value = value[:-6]
    parts = [int(p) for p in value.split(":")]
    return time(parts[0], parts[1] if len(parts) > 1 else 0, parts[2] if len(parts) > 2 else 0), offset


def _date(value) -> date | None:
    if not value:
        return None
    return date.fromisoformat(str(value)[:10])


def _byday_matches(byday: str, day: date, monthly: bool) -> bool:
    code = DAYS[day.weekday()]
    for part in (p.strip().upper() for p in byday.split(",") if p.strip()):
        if part[-2:] != code:
            continue
        ordinal = part[:-2]
        if not ordinal:
            return True
        if monthly:
            n = int(ordinal)
            if n > 0 and (day.day - 1) // 7 + 1 == n:
                return True
            if n < 0:
                days_left = (date(day.year + day.month // 12, day.month % 12 + 1, 1) - day).days - 1
                if days_left // 7 + 1 == -n:
                    return True
    return False


def schedule_open_at(schedule: dict, at: datetime, local: ZoneInfo) -> bool:
    opens, closes = schedule.get("opens_at"), schedule.get("closes_at")
    if not opens or not closes:
        return False
    open_time, offset = _parse_time(opens)
    close_time, _ = _parse_time(closes)
    moment = at.astimezone(offset or local)
    day = moment.date()
    valid_from, valid_to = _date(schedule.get("valid_from")), _date(schedule.get("valid_to"))
    until = _date(schedule.get("until"))
    if (valid_from and day < valid_from) or (valid_to and day > valid_to) or (until and day > until):
        return False
    freq = (schedule.get("freq") or "WEEKLY").upper()
    byday = schedule.get("byday") or ""
    if freq == "MONTHLY":
        monthdays = [int(d) for d in str(schedule.get("bymonthday") or "").split(",") if d.strip()]
        if byday and not _byday_matches(byday, day, monthly=True):
            return False
        if monthdays and day.day not in monthdays:
            return False
        if not byday and not monthdays:
            return False
    else:
        if byday and not _byday_matches(byday, day, monthly=False):
            return False
        interval = int(schedule.get("interval") or 1)
        start = _date(schedule.get("dtstart"))
        if interval > 1 and start:
            weeks = ((day - timedelta(days=day.weekday())) - (start - timedelta(days=start.weekday()))).days // 7
            if weeks < 0 or weeks % interval:
                return False
    return open_time <= moment.time().replace(tzinfo=None) < close_time


def describe_schedule(schedule: dict) -> str:
    if schedule.get("description"):
        return schedule["description"]
    days = ", ".join(DAY_NAMES[DAYS.index(d[-2:])] for d in (schedule.get("byday") or "").split(",") if d[-2:] in DAYS)
    return f"{days} {schedule.get('opens_at', '?')}–{schedule.get('closes_at', '?')}".strip()


# --- directory search ------------------------------------------------------------------------


def fold(text: str) -> str:
    """Case- and accent-insensitive form for free-text search ('Liège' matches 'liege')."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c)).replace("’", "'")


def service_categories(service: dict) -> list[str]:
    codes = []
    for attribute in service.get("attributes") or []:
        term = attribute.get("taxonomy_term") or {}
        if term.get("taxonomy") == CATEGORY_TAXONOMY and term.get("code") in CATEGORIES:
            codes.append(term["code"])
    return codes


def organisation_categories(org: dict) -> list[str]:
    seen: list[str] = []
    for service in org.get("services") or []:
        for code in service_categories(service):
            if code not in seen:
                seen.append(code)
    return seen


def organisation_regions(org: dict) -> list[str]:
    seen: list[str] = []
    for location in org.get("locations") or []:
        region = location.get("x_region")
        if region and region not in seen:
            seen.append(region)
    return seen


def _languages(owner: dict) -> list[dict]:
    return list(owner.get("languages") or [])


def _language_matches(language: dict, wanted: str) -> bool:
    wanted = fold(wanted)
    return fold(language.get("code") or "") == wanted or fold(language.get("name") or "") == wanted


@dataclass(frozen=True)
class SearchQuery:
    category: str | None = None
    region: str | None = None
    language: str | None = None
    open_now: bool = False
    text: str | None = None


@dataclass
class SearchMatch:
    organisation: dict
    services: list[dict] = field(default_factory=list)
    reasons: list[dict] = field(default_factory=list)
    text_in_name: bool = False

    def because(self, criterion: str, detail: str) -> None:
        self.reasons.append({"criterion": criterion, "detail": detail})


def _excerpt(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _address_line(location: dict) -> str:
    for address in location.get("addresses") or []:
        return ", ".join(p for p in (address.get("address_1"), f"{address.get('postal_code', '')} {address.get('city', '')}".strip()) if p)
    return location.get("name") or ""


def match_organisation(org: dict, query: SearchQuery, at: datetime, local: ZoneInfo) -> SearchMatch | None:
    """Whether `org` answers the query, and why (one reason per criterion it met)."""
    found = SearchMatch(org)
    services = list(org.get("services") or [])

    if query.category:
        services = [s for s in services if query.category in service_categories(s)]
        if not services:
            return None
        label = CATEGORIES.get(query.category, {}).get("en", query.category)
        for service in services:
            evidence = f": “{_excerpt(service['description'])}”" if service.get("description") else ""
            found.because("category", f"offers {label.lower()}{evidence}")
        found.services = services

    if query.region:
        hits = [loc for loc in org.get("locations") or [] if loc.get("x_region") == query.region]
        if not hits:
            return None
        region = REGIONS.get(query.region, {}).get("en", query.region)
        for location in hits:
            if location.get("x_region_derived"):
                basis = location.get("x_region_basis") or "the description"
                found.because("region", f"in {region} (derived from {basis})")
            else:
                found.because("region", f"in {region}: {_address_line(location)}")

    if query.language:
        said = []
        for phone in org.get("phones") or []:
            said += [f"phone {phone['number']} answers in {lang.get('name') or lang.get('code')}"
                     for lang in _languages(phone) if _language_matches(lang, query.language)]
        for service in services:
            for phone in service.get("phones") or []:
                said += [f"phone {phone['number']} answers in {lang.get('name') or lang.get('code')}"
                         for lang in _languages(phone) if _language_matches(lang, query.language)]
            said += [f"{service['name']} is offered in {lang.get('name') or lang.get('code')}"
                     for lang in _languages(service) if _language_matches(lang, query.language)]
        for location in org.get("locations") or []:
            said += [f"{lang.get('name') or lang.get('code')} spoken at {_address_line(location) or 'their office'}"
                     for lang in _languages(location) if _language_matches(lang, query.language)]
        if not said:
            return None
        for detail in said:
            found.because("language", detail)

    if query.open_now:
        open_ones = []
        for location in org.get("locations") or []:
            open_ones += [(s, _address_line(location) or "office") for s in location.get("schedules") or []
                          if schedule_open_at(s, at, local)]
        for service in services:
            open_ones += [(s, service["name"]) for s in service.get("schedules") or [] if schedule_open_at(s, at, local)]
        if not open_ones:
            return None
        for schedule, where in open_ones:
            found.because("open_now", f"open now ({where}): {describe_schedule(schedule)}")

    if query.text and query.text.strip():
        words = fold(query.text).split()
        fields = _text_fields(org, services)
        for word in words:
            where = next((label for label, value in fields if word in value), None)
            if where is None:
                return None
            found.because("text", f"“{word}” in {where}")
            found.text_in_name = found.text_in_name or where == "the name"
    return found


def _text_fields(org: dict, services: list[dict]) -> list[tuple[str, str]]:
    names = [org.get("name") or "", org.get("alternate_name") or ""]
    names += list(((org.get("x_i18n") or {}).get("name") or {}).values())
    fields = [("the name", fold(" ".join(names))), ("the description", fold(org.get("description") or ""))]
    for service in services or org.get("services") or []:
        text = " ".join(filter(None, (service.get("name"), service.get("description"), service.get("eligibility_description"))))
        fields.append((f"the service “{service.get('name')}”", fold(text)))
    places = " ".join(_address_line(loc) + " " + (loc.get("name") or "") for loc in org.get("locations") or [])
    fields.append(("the locations", fold(places)))
    return fields


def search(orgs: list[dict], query: SearchQuery, at: datetime, local: ZoneInfo) -> list[SearchMatch]:
    if query.category and query.category not in CATEGORIES:
        raise ValueError(f"unknown category {query.category!r}")
    if query.region and query.region not in REGIONS:
        raise ValueError(f"unknown region {query.region!r}")
    matches = [m for org in orgs if (m := match_organisation(org, query, at, local)) is not None]
    matches.sort(key=lambda m: (not m.text_in_name, fold(m.organisation.get("name") or "")))
    return matches


# --- choosing a partner for an automatic referral ----------------------------------------------


def choose_partner(orgs: list[dict], category: str, *, preferred: str | None = None,
                   exclude: set[str] | frozenset[str] = frozenset(), home_region: str = "brussels") -> dict | None:
    """The configured partner for this category when it is in the directory, else the first
    partner offering the category, those in the refuge's own region first, then by name."""
    candidates = [o for o in orgs if o["id"] not in exclude and category in organisation_categories(o)]
    if preferred:
        chosen = next((o for o in orgs if o["id"] == preferred and o["id"] not in exclude), None)
        if chosen is not None:
            return chosen
    candidates.sort(key=lambda o: (home_region not in organisation_regions(o), fold(o.get("name") or "")))
    return candidates[0] if candidates else None


def service_for(org: dict, category: str) -> dict | None:
    return next((s for s in org.get("services") or [] if category in service_categories(s)), None)


def notice_language(org: dict) -> str:
    """Language of the notice to a partner: theirs when recorded, else their region's."""
    explicit = org.get("x_notice_language")
    if explicit in ("fr", "nl", "en"):
        return explicit
    regions = organisation_regions(org)
    if regions == ["flanders"]:
        return "nl"
    if regions and all(r == "wallonia" for r in regions):
        return "fr"
    return "en"


def referral_email(org: dict) -> str | None:
    """Where referral notices go: the partner's referral address, else its general address."""
    if org.get("x_referral_email"):
        return org["x_referral_email"]
    if org.get("email"):
        return org["email"]
    for contact in org.get("contacts") or []:
        if contact.get("email"):
            return contact["email"]
    return None


def tombstone(erasure_ref: str) -> str:
    """What replaces an erased person's reference where a row must stay (statistics, the partner's
    referral). One per erasure, and short enough for a reference column (32 characters)."""
    ref = f"ERASED-{erasure_ref}"
    return ref if len(ref) <= 32 else "ERASED-" + hashlib.sha256(erasure_ref.encode()).hexdigest()[:25]
