"""What the console says, in the staff member's language: codes, rules and timeline lines in words.

Messages are marked with N_ and translated when shown, with the catalogue of the staff
member's language (see i18n.py).
"""

from __future__ import annotations

from collections.abc import Callable


def N_(message: str) -> str:  # noqa: N802  (the conventional name Babel extracts)
    return message


Gettext = Callable[[str], str]

DECISIONS = {
    "accommodate": N_("Accommodate"),
    "waitlist": N_("Waiting list"),
    "support_only": N_("Support without a place"),
    "refer": N_("Refer"),
    "decline": N_("Decline"),
}
TRACKS = {
    "youth": N_("Youth refuge"),
    "cadal": N_("CADAL"),
    "upstream": N_("Upstream support"),
    "minor": N_("Minor"),
    "none": N_("No programme"),
}
PLACE_KINDS = {
    "emergency": N_("emergency place"),
    "post_shelter": N_("post-shelter place"),
    "cadal": N_("CADAL place"),
}
CHANNELS = {
    "phone": N_("Phone"),
    "email": N_("E-mail"),
    "walk_in": N_("Walk-in"),
    "partner": N_("Partner organisation"),
    "fedasil": N_("Fedasil designation"),
}
CALLERS = {
    "self": N_("The person themselves"),
    "on_behalf": N_("Someone on their behalf"),
}
SITUATIONS = {
    "excluded": N_("Excluded from home because of sexual orientation and/or gender identity"),
    "at_risk": N_("At risk of exclusion, still at home"),
    "asylum_reception": N_("Asylum seeker facing violence or discrimination in a reception centre"),
    "other": N_("Other situation"),
}
URGENCIES = {
    "immediate": N_("Immediate (tonight)"),
    "days": N_("Within days"),
    "weeks": N_("Within weeks"),
}
NEEDS = {
    "accommodation": N_("Accommodation"),
    "administrative": N_("Administrative"),
    "legal": N_("Legal"),
    "social": N_("Social"),
    "physical_health": N_("Physical health"),
    "mental_health": N_("Mental health"),
    "socio_cultural": N_("Socio-cultural"),
    "housing_search": N_("Housing search"),
    "job_training_education": N_("Job, training or education"),
}
CONTACT_METHODS = {
    "phone": N_("Phone"),
    "email": N_("E-mail"),
    "through_caller": N_("Through the person who called"),
    "in_person": N_("In person only"),
}
WHERE_NOW = {
    "in_stay": N_("In a stay"),
    "stay_ending": N_("Stay ending soon"),
    "waitlisted": N_("On the waiting list"),
    "referred": N_("Referred"),
    "discharged": N_("Has left the refuge"),
    "supported": N_("Supported without a place"),
    "declined": N_("Declined"),
    "assessed": N_("Assessed, waiting for housing"),
}
MATCH_REASONS = {
    "same_name": N_("same name"),
    "same_date_of_birth": N_("same date of birth"),
    "same_phone": N_("same phone number"),
    "same_email": N_("same e-mail address"),
}
DESTINATIONS = {
    "own_housing": N_("own housing"),
    "post_shelter": N_("post-shelter housing"),
    "family": N_("family"),
    "another_shelter": N_("another shelter"),
    "unknown": N_("unknown destination"),
}
REFERRAL_STATUSES = {
    "pending": N_("pending"),
    "accepted": N_("accepted"),
    "declined": N_("declined"),
    "completed": N_("completed"),
    "revoked": N_("revoked"),
    "expired": N_("expired"),
}
CADAL_CHECKS = {
    "lgbtqia_asylum_seeker": N_("An LGBTQIA+ person seeking asylum"),
    "faces_discrimination": N_("Confronted with discrimination, exclusion or violence"),
    "mental_health_compatible": N_("Mental health compatible with community life"),
    "accepts_house_rules": N_("Accepts the internal regulations and the community-life project"),
}
COUNTERS = {
    "young_people_accommodated": N_("Young people accommodated"),
    "young_people_supported": N_("Young people supported"),
    "requests_processed": N_("Requests processed"),
}

# Housing's places and notify's delivery log, as the console shows them.
PLACE_KIND_HEADINGS = {
    "emergency": N_("Emergency youth places"),
    "post_shelter": N_("Post-shelter places"),
    "cadal": N_("CADAL places"),
}
PLACE_STATES = {
    "vacant": N_("Vacant"),
    "reserved": N_("Reserved (offered)"),
    "occupied": N_("Occupied"),
    "out_of_service": N_("Out of service"),
}
DELIVERY_STATUSES = {
    "pending": N_("Waiting to be sent"),
    "sending": N_("Being sent"),
    "sent": N_("Sent"),
    "failed": N_("Failed"),
    "held": N_("Held for the next summary"),
    "digested": N_("Sent in a summary"),
}
DELIVERY_CHANNELS = {
    "email": N_("E-mail"),
    "webhook": N_("Webhook"),
}
AUDIENCES = {
    "social_coordinator": N_("Social coordinator"),
    "housing_staff": N_("Housing staff"),
    "event_partner": N_("The partner named in the event"),
    "subscribed_partners": N_("Subscribed partners"),
    "informed_partners": N_("Partners already informed"),
}
ATTEMPT_OUTCOMES = {
    "in_flight": N_("in progress"),
    "sent": N_("handed over"),
    "temporary": N_("refused for now, tried again later"),
    "permanent": N_("refused for good"),
    "interrupted": N_("interrupted, sent again"),
}
TEMPLATE_KINDS = {
    "staff": N_("Staff alert"),
    "partner": N_("Message to a partner"),
}

# What the form says when a field is refused, on the server and (the same words) in the browser.
FIELD_ERRORS = {
    "name": N_("Give the name the person wants to be called (one line, 200 characters at most)."),
    "date_of_birth": N_("Enter a date of birth in the past, after 1900."),
    "stated_age": N_("Give a date of birth or an age between 0 and 120."),
    "phone": N_("Enter a phone number: digits, spaces and + ( ) . / - only."),
    "email": N_("Enter a valid e-mail address."),
    "preferred_contact": N_("Choose a way of contact you have the details for."),
    "channel": N_("Choose how the request came in."),
    "situation": N_("Choose the person's situation."),
    "cadal": N_("CADAL criteria apply only to asylum seekers in a reception centre."),
    "cadal_fedasil_designation_ref": N_("The Fedasil designation reference is one line, 60 characters at most."),
    "notes": N_("Notes are limited to 4000 characters."),
    "caller_name": N_("One line, 200 characters at most."),
    "caller_organisation": N_("One line, 200 characters at most."),
    "person_ref": N_("That case file does not exist."),
    "reason": N_("Give the reason for this decision."),
    "decision": N_("Choose a decision."),
    "place_kind": N_("Choose a kind of place that fits the track."),
    "next_follow_up_on": N_("Choose a date from today on."),
    "note": N_("The note is limited to 2000 characters."),
}
CHECK_FIELD = N_("Check this field.")
# Why the rules of the house refuse a staff decision (domain.OverrideRefused reasons).
REFUSALS = {
    "a minor can never be given a place": N_("A minor can never be given a place."),
    "CADAL needs all five admission criteria recorded": N_("CADAL needs all five admission criteria recorded."),
    "CADAL places are for the CADAL track only": N_("CADAL places are for the CADAL track only."),
    "a staff decision needs a reason": N_("Give the reason for this decision."),
}


def label(_: Gettext, table: dict[str, str], code: str | None) -> str:
    if code is None:
        return ""
    return _(table[code]) if code in table else code


def field_error(_: Gettext, field: str) -> str:
    return _(FIELD_ERRORS.get(field) or CHECK_FIELD)


def decision_sentence(_: Gettext, decision: str, track: str, place_kind: str | None, needs_review: bool,
                      follow_up_on: str) -> str:
    """The decision in one sentence, as staff would say it."""
    place = label(_, PLACE_KINDS, place_kind)
    if decision == "accommodate" and track == "cadal":
        return _("Accommodate at CADAL.")
    if decision == "accommodate":
        return _("Accommodate in the youth refuge (%(place)s).") % {"place": place}
    if decision == "waitlist":
        return _("Put on the waiting list (%(place)s).") % {"place": place}
    if decision == "support_only" and track == "upstream":
        return _("Support without a place (upstream support), before any rupture with the home.")
    if decision == "support_only":
        return _("Support without a place.")
    if decision == "refer" and track == "minor":
        return _("Refer to youth services and follow up on %(date)s. A minor is never given a place.") % {
            "date": follow_up_on}
    if decision == "refer":
        return _("Refer to a partner organisation.")
    if needs_review:
        return _("No place by the rules: outside the age band, a staff member decides case by case and gives a reason.")
    if track == "cadal":
        return _("Not admitted to CADAL: an admission criterion is missing.")
    return _("Declined.")


CADAL_RULES = {
    "cadal_fedasil_designation": (N_("Designation from Fedasil recorded (reference %(ref)s)."),
                                  N_("Missing: a designation from Fedasil.")),
    "cadal_lgbtqia_asylum_seeker": (N_("An LGBTQIA+ person seeking asylum."),
                                    N_("Missing: being an LGBTQIA+ person seeking asylum.")),
    "cadal_faces_discrimination": (N_("Confronted with discrimination, exclusion or violence."),
                                   N_("Missing: being confronted with discrimination, exclusion or violence.")),
    "cadal_mental_health_compatible": (N_("Mental health compatible with community life."),
                                       N_("Missing: mental health compatible with community life.")),
    "cadal_accepts_house_rules": (N_("Accepts the internal regulations and the community-life project."),
                                  N_("Missing: acceptance of the internal regulations and the community-life project.")),
}


def rule_sentence(_: Gettext, rule: dict, day: Callable[[str], str]) -> str:
    """One evaluated rule, its inputs and its outcome, in words."""
    name, passed, inputs = rule["rule"], rule["passed"], rule.get("inputs") or {}
    age = inputs.get("age")
    source = _("from the date of birth") if inputs.get("age_from") == "date_of_birth" else _("as stated")
    if name == "adult":
        if age is None:
            return _("Age unknown: treated as a possible minor.")
        if passed:
            return _("Aged %(age)s (%(source)s): an adult.") % {"age": age, "source": source}
        return _("Aged %(age)s (%(source)s): a minor can never be given a place.") % {"age": age, "source": source}
    if name == "minor_referral":
        return _("Referred to youth services; follow-up on %(date)s.") % {"date": day(inputs.get("follow_up_on"))}
    if name == "youth_age_band":
        low, high = (inputs.get("band") or [18, 25])[:2]
        if passed:
            return _("Aged %(age)s: within the youth refuge's band of %(low)s to %(high)s.") % {
                "age": age, "low": low, "high": high}
        return _("Aged %(age)s: outside the band of %(low)s to %(high)s, a case-by-case decision that needs a "
                 "staff member's reason.") % {"age": age, "low": low, "high": high}
    if name == "excluded_for_identity":
        return _("Excluded from home because of sexual orientation and/or gender identity.")
    if name == "at_risk_not_excluded":
        return _("At risk of rupture but not excluded yet: support without a place.")
    if name == "within_mandate":
        return _("Neither excluded nor at risk because of orientation or identity, nor an asylum seeker in a "
                 "reception centre: refer to a partner organisation.")
    if name in CADAL_RULES:
        met, missing = CADAL_RULES[name]
        return _(met) % {"ref": inputs.get("fedasil_designation_ref") or ""} if passed else _(missing)
    if name == "staff_override":
        return _("Staff decision: %(decision)s. Reason: %(reason)s") % {
            "decision": label(_, DECISIONS, inputs.get("decision")), "reason": rule.get("explanation", "")}
    return rule.get("explanation", name)


def timeline_sentence(_: Gettext, event_type: str, details: dict, day: Callable[[str], str]) -> str:
    """A line of the case file's timeline, from another service's event."""
    d = details or {}
    place = label(_, PLACE_KINDS, d.get("place_kind"))
    if event_type == "PersonAdmitted":
        return _("Admitted to place %(place_ref)s (%(place)s) from %(start)s until %(end)s.") % {
            "place_ref": d.get("place_ref", ""), "place": place, "start": day(d.get("starts_on")),
            "end": day(d.get("planned_end"))}
    if event_type == "PersonWaitlisted":
        return _("On the waiting list (%(place)s), position %(position)s.") % {
            "place": place, "position": d.get("position", "?")}
    if event_type == "StayExtended":
        return _("Stay extended until %(end)s.") % {"end": day(d.get("planned_end"))}
    if event_type == "PersonMoved":
        return _("Moved from place %(from_place)s to place %(to_place)s.") % {
            "from_place": d.get("from_place_ref", ""), "to_place": d.get("to_place_ref", "")}
    if event_type == "StayEnding":
        return _("The stay ends on %(end)s (notice %(days)s days ahead).") % {
            "end": day(d.get("planned_end")), "days": d.get("days_before", "?")}
    if event_type == "PersonDischarged":
        return _("Left the refuge to %(destination)s; %(planned)s, %(safe)s.") % {
            "destination": label(_, DESTINATIONS, d.get("destination")),
            "planned": _("a planned exit") if d.get("planned") else _("an unplanned exit"),
            "safe": _("safe") if d.get("safe") else _("not known to be safe")}
    if event_type == "ReferralMade":
        return _("Referred to partner %(partner)s (%(category)s).") % {
            "partner": d.get("partner_ref", ""), "category": d.get("service_category", "")}
    if event_type == "ReferralStatusChanged":
        return _("Referral %(referral)s is now %(status)s.") % {
            "referral": d.get("referral_ref", ""), "status": label(_, REFERRAL_STATUSES, d.get("status"))}
    return event_type
