"""The rules notify starts with, and what makes a rule valid. Staff change rules through the API."""

from __future__ import annotations

from shared.events import REGISTRY, SUBSCRIPTIONS

from .domain import CONSENTED_FIELDS, LANGUAGES, STAFF_AUDIENCES, Audience, ChannelChoice, Timing
from .rendering import CATALOGUE, Renderer

# name, event type, audience, channel, template, timing, when
DEFAULT_RULES: list[dict] = [
    dict(name="admission-to-coordinator", event_type="PersonAdmitted", audience="social_coordinator",
         channel="email", template="person_admitted", timing="quiet_hours"),
    dict(name="waiting-list-to-coordinator", event_type="PersonWaitlisted", audience="social_coordinator",
         channel="email", template="person_waitlisted", timing="quiet_hours"),
    dict(name="stays-ending-digest-to-housing", event_type="StayEnding", audience="housing_staff",
         channel="email", template="stay_ending", timing="digest"),
    dict(name="exit-to-coordinator", event_type="PersonDischarged", audience="social_coordinator",
         channel="email", template="person_discharged", timing="quiet_hours"),
    dict(name="freed-place-to-housing", event_type="PlaceFreed", audience="housing_staff",
         channel="email", template="place_freed", timing="quiet_hours"),
    dict(name="offered-place-to-housing", event_type="PlaceOffered", audience="housing_staff",
         channel="email", template="place_offered", timing="quiet_hours"),
    dict(name="freed-place-to-subscribed-partners", event_type="PlaceFreed", audience="subscribed_partners",
         channel="all", template="partner_place_freed", timing="immediate"),
    dict(name="minor-follow-up-to-coordinator", event_type="RequestAssessed", audience="social_coordinator",
         channel="email", template="request_assessed", timing="immediate", when={"track": ["minor"]}),
    dict(name="referral-to-partner", event_type="ReferralMade", audience="event_partner",
         channel="all", template="partner_referral_made", timing="immediate"),
    dict(name="referral-status-to-coordinator", event_type="ReferralStatusChanged", audience="social_coordinator",
         channel="email", template="referral_status_changed", timing="quiet_hours"),
    dict(name="referral-ended-to-partner", event_type="ReferralStatusChanged", audience="event_partner",
         channel="all", template="partner_referral_status", timing="immediate",
         when={"status": ["revoked", "expired"]}),
    dict(name="consent-withdrawn-to-informed-partner", event_type="ConsentWithdrawn", audience="informed_partners",
         channel="all", template="partner_consent_withdrawn", timing="immediate"),
    dict(name="erasure-to-informed-partners", event_type="ErasureRequested", audience="informed_partners",
         channel="all", template="partner_erasure_requested", timing="immediate"),
]


def readable_event_types() -> dict[str, type]:
    """Every contract published on a stream notify reads: what a rule may react to."""
    producers = set(SUBSCRIPTIONS["notify"])
    return {name: contract for name, contract in sorted(REGISTRY.items()) if contract.producer in producers}


def rule_problems(rule: dict, renderer: Renderer) -> list[tuple[str, str]]:
    """(field, reason) for everything wrong with a rule; empty when it may be saved."""
    problems: list[tuple[str, str]] = []
    contracts = readable_event_types()
    contract = contracts.get(rule.get("event_type", ""))
    if contract is None:
        problems.append(("event_type", "not an event notify reads"))
    audience = rule.get("audience")
    if audience not in Audience.__members__:
        problems.append(("audience", f"must be one of {', '.join(Audience)}"))
    if rule.get("channel") not in ChannelChoice.__members__:
        problems.append(("channel", f"must be one of {', '.join(ChannelChoice)}"))
    if rule.get("timing") not in Timing.__members__:
        problems.append(("timing", f"must be one of {', '.join(Timing)}"))
    if rule.get("language") is not None and rule["language"] not in LANGUAGES:
        problems.append(("language", f"must be one of {', '.join(LANGUAGES)}, or empty for the recipient's language"))
    info = CATALOGUE.get(rule.get("template", ""))
    if info is None or info.name == "digest":
        problems.append(("template", "unknown template"))
    elif missing := [lang for lang in LANGUAGES if not renderer.exists(info.name, lang)]:
        problems.append(("template", f"missing in {', '.join(missing)}"))
    if audience in Audience.__members__ and info is not None:
        staff = Audience(audience) in STAFF_AUDIENCES
        if staff and info.kind != "staff":
            problems.append(("template", "staff audiences need a staff template"))
        if not staff and info.kind != "partner":
            problems.append(("template", "partner audiences need a partner template"))
        if staff and rule.get("channel") != ChannelChoice.email:
            problems.append(("channel", "staff are reached by e-mail"))
        if not staff and rule.get("timing") != Timing.immediate:
            problems.append(("timing", "quiet hours and digests are for staff alerts"))
    if contract is not None:
        fields = set(contract.model_fields)
        if info is not None and info.name != "digest":
            # Staff templates get every field plus these; partner templates may use consented fields
            # only behind `is defined`, and the signed link when the event names a referral.
            extra = {"console_url", "notification_ref", "language"} if info.kind == "staff" else set(CONSENTED_FIELDS)
            if "referral_ref" in fields:
                extra.add("referral_link")
            if missing := sorted(renderer.variables(info.name) - fields - extra):
                problems.append(("template", f"uses {', '.join(missing)}, which {contract.__name__} does not carry"))
        if audience == Audience.event_partner and "partner_ref" not in fields:
            problems.append(("audience", f"{contract.__name__} names no partner"))
        if audience == Audience.informed_partners and "person_ref" not in fields:
            problems.append(("audience", f"{contract.__name__} names no person"))
        for key, values in (rule.get("when") or {}).items():
            if key not in fields:
                problems.append((f"when.{key}", f"not a field of {contract.__name__}"))
            elif not isinstance(values, list) or not values or not all(isinstance(v, str) and 0 < len(v) <= 60 for v in values):
                problems.append((f"when.{key}", "must be a non-empty list of codes"))
    return problems
