"""Referrals' pure rules: the closed loop, the consent gate, opening hours, search, partner choice,
signed links."""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.referrals import directory, domain
from services.referrals.domain import Action, ConsentView, SearchQuery, Status
from services.referrals.links import LinkExpired, LinkRefused, PartnerLinks

BRUSSELS = ZoneInfo("Europe/Brussels")


def at(text: str) -> datetime:
    """A wall-clock time in Brussels."""
    return datetime.fromisoformat(text).replace(tzinfo=BRUSSELS)


# --- closed loop -----------------------------------------------------------------------------


def test_the_loop_goes_pending_accepted_completed_or_declined_revoked_expired():
    assert domain.next_status("pending", Action.accept).status is Status.accepted
    declined = domain.next_status("pending", Action.decline, reason_code="no_capacity")
    assert (declined.status, declined.reason_code) == (Status.declined, "no_capacity")
    done = domain.next_status("accepted", Action.complete, outcome="got_help")
    assert (done.status, done.outcome, done.reason_code) == (Status.completed, domain.Outcome.got_help, None)
    failed = domain.next_status("accepted", Action.complete, outcome="not_successful", reason_code="person_did_not_come")
    assert (failed.outcome, failed.reason_code) == (domain.Outcome.not_successful, "person_did_not_come")
    assert domain.next_status("accepted", Action.revoke).status is Status.revoked
    assert domain.next_status("pending", Action.expire).reason_code == "no_answer"


@pytest.mark.parametrize("status,action", [
    ("accepted", Action.accept), ("accepted", Action.decline), ("pending", Action.complete),
    ("declined", Action.accept), ("completed", Action.revoke), ("revoked", Action.accept),
    ("expired", Action.accept), ("accepted", Action.expire),
])
def test_no_action_out_of_turn(status, action):
    with pytest.raises(domain.TransitionRefused):
        domain.next_status(status, action, reason_code="other", outcome="got_help")


def test_a_decline_and_an_unsuccessful_outcome_need_a_reason_code():
    with pytest.raises(ValueError, match="decline needs a reason"):
        domain.next_status("pending", Action.decline)
    with pytest.raises(ValueError, match="decline needs a reason"):
        domain.next_status("pending", Action.decline, reason_code="they seemed rude")
    with pytest.raises(ValueError, match="unsuccessful outcome needs a reason"):
        domain.next_status("accepted", Action.complete, outcome="not_successful")
    with pytest.raises(ValueError, match="needs an outcome"):
        domain.next_status("accepted", Action.complete)


# --- consent gate ----------------------------------------------------------------------------


def test_consent_covers_only_its_partner_purpose_and_time():
    today = date(2026, 6, 1)
    consents = [ConsentView("C-1", "org-a", "housing_search", expires_on=date(2026, 6, 30)),
                ConsentView("C-2", "org-b", "referral"),
                ConsentView("C-3", "org-c", "referral:legal_aid", expires_on=date(2026, 5, 31)),
                ConsentView("C-4", "org-d", "referral", withdrawn=True)]
    assert domain.covering_consent(consents, "org-a", "housing_search", today).consent_ref == "C-1"
    assert domain.covering_consent(consents, "org-a", "legal_aid", today) is None  # other purpose
    assert domain.covering_consent(consents, "org-b", "legal_aid", today).consent_ref == "C-2"  # any referral
    assert domain.covering_consent(consents, "org-c", "legal_aid", today) is None  # expired
    assert domain.covering_consent(consents, "org-d", "legal_aid", today) is None  # withdrawn
    assert domain.covering_consent(consents, "org-z", "legal_aid", today) is None  # other partner


def test_sharing_needs_a_request_and_consent_or_an_override_not_withdrawn_since():
    consent = ConsentView("C-1", "org-a", "referral")
    assert domain.may_share(share_requested=True, consent=consent, override=False, withdrawn_since_override=False)
    assert not domain.may_share(share_requested=False, consent=consent, override=False, withdrawn_since_override=False)
    assert not domain.may_share(share_requested=True, consent=None, override=False, withdrawn_since_override=False)
    assert domain.may_share(share_requested=True, consent=None, override=True, withdrawn_since_override=False)
    assert not domain.may_share(share_requested=True, consent=None, override=True, withdrawn_since_override=True)


# --- opening hours ---------------------------------------------------------------------------

JRS_MONDAY = {"freq": "WEEKLY", "byday": "MO", "opens_at": "09:30", "closes_at": "12:30"}


def test_weekly_hours_are_brussels_wall_clock_in_winter_and_in_summer():
    assert domain.schedule_open_at(JRS_MONDAY, at("2026-11-23T09:30"), BRUSSELS)
    assert domain.schedule_open_at(JRS_MONDAY, datetime(2026, 7, 6, 8, 0, tzinfo=UTC), BRUSSELS)  # 10:00 CEST
    assert not domain.schedule_open_at(JRS_MONDAY, at("2026-11-23T12:30"), BRUSSELS)
    assert not domain.schedule_open_at(JRS_MONDAY, at("2026-11-24T10:00"), BRUSSELS)  # a Tuesday
    assert not domain.schedule_open_at({**JRS_MONDAY, "valid_to": "2026-01-01"}, at("2026-11-23T10:00"), BRUSSELS)


def test_explicit_offsets_fortnights_and_monthly_rules():
    utc = {"byday": "MO", "opens_at": "08:00Z", "closes_at": "09:00Z"}
    assert domain.schedule_open_at(utc, at("2026-11-23T09:30"), BRUSSELS)  # 08:30Z
    fortnight = {**JRS_MONDAY, "interval": 2, "dtstart": "2026-11-09"}
    assert domain.schedule_open_at(fortnight, at("2026-11-23T10:00"), BRUSSELS)
    assert not domain.schedule_open_at(fortnight, at("2026-11-16T10:00"), BRUSSELS)
    second_monday = {"freq": "MONTHLY", "byday": "2MO", "opens_at": "09:00", "closes_at": "12:00"}
    assert domain.schedule_open_at(second_monday, at("2026-11-09T10:00"), BRUSSELS)
    assert not domain.schedule_open_at(second_monday, at("2026-11-16T10:00"), BRUSSELS)
    last_friday = {"freq": "MONTHLY", "byday": "-1FR", "opens_at": "09:00", "closes_at": "12:00"}
    assert domain.schedule_open_at(last_friday, at("2026-11-27T10:00"), BRUSSELS)
    assert not domain.schedule_open_at(last_friday, at("2026-11-20T10:00"), BRUSSELS)


# --- search ----------------------------------------------------------------------------------


def org(ref, name, *, categories, region=None, derived=False, phone_languages=(), schedules=(), description=""):
    services = [{"id": f"{ref}-s{i}", "name": domain.CATEGORIES[c]["en"], "status": "active", "description": f"{c} work",
                 "attributes": [{"id": f"{ref}-a{i}", "taxonomy_term": {"id": c, "code": c, "name": c, "description": c,
                                                                          "taxonomy": domain.CATEGORY_TAXONOMY}}]}
                for i, c in enumerate(categories)]
    locations = []
    if region:
        location = {"id": f"{ref}-l", "location_type": "physical", "x_region": region, "x_region_derived": derived,
                    "schedules": list(schedules)}
        if derived:
            location.update(name="somewhere", x_region_basis="the words “in the region”")
        else:
            location["addresses"] = [{"id": f"{ref}-ad", "address_1": "Rue 1", "postal_code": "1000", "city": "Bruxelles",
                                      "state_province": "Brussels", "country": "BE", "address_type": "physical"}]
        locations.append(location)
    phones = [{"id": f"{ref}-p", "number": "+32 2 000 00 00",
               "languages": [{"id": f"{ref}-pl{i}", "code": code, "name": name} for i, (code, name) in enumerate(phone_languages)]}]
    return {"id": ref, "name": name, "description": description, "services": services, "locations": locations,
            "phones": phones}


DIRECTORY = [
    org("a", "Aide juridique Bruxelles", categories=["legal_aid"], region="brussels", phone_languages=[("nl", "Dutch")]),
    org("b", "Brussels French only", categories=["legal_aid"], region="brussels", phone_languages=[("fr", "French")]),
    org("c", "Liège legal", categories=["legal_aid", "shelter"], region="wallonia", derived=True,
        phone_languages=[("nl", "Dutch")], description="Accueil à Liège"),
    org("d", "Brussels shelter", categories=["shelter"], region="brussels", phone_languages=[("nl", "Dutch")],
        schedules=[JRS_MONDAY]),
]


def names(matches):
    return [m.organisation["name"] for m in matches]


def test_search_by_category_region_and_language_explains_each_match():
    found = domain.search(DIRECTORY, SearchQuery(category="legal_aid", region="brussels", language="nl"),
                          at("2026-11-23T10:00"), BRUSSELS)
    assert names(found) == ["Aide juridique Bruxelles"]
    why = {r["criterion"]: r["detail"] for r in found[0].reasons}
    assert why["category"].startswith("offers legal aid")
    assert why["region"] == "in Brussels: Rue 1, 1000 Bruxelles"
    assert why["language"] == "phone +32 2 000 00 00 answers in Dutch"
    assert [s["id"] for s in found[0].services] == ["a-s0"]

    wallonia = domain.search(DIRECTORY, SearchQuery(region="wallonia"), at("2026-11-23T10:00"), BRUSSELS)
    assert names(wallonia) == ["Liège legal"]
    assert wallonia[0].reasons[0]["detail"] == "in Wallonia (derived from the words “in the region”)"
    assert names(domain.search(DIRECTORY, SearchQuery(language="Dutch", category="shelter"), at("2026-11-23T10:00"),
                               BRUSSELS)) == ["Brussels shelter", "Liège legal"]


def test_open_now_against_a_fixed_clock():
    monday_10 = domain.search(DIRECTORY, SearchQuery(open_now=True), at("2026-11-23T10:00"), BRUSSELS)
    assert names(monday_10) == ["Brussels shelter"]
    assert monday_10[0].reasons == [{"criterion": "open_now",
                                     "detail": "open now (Rue 1, 1000 Bruxelles): Monday 09:30–12:30"}]
    assert domain.search(DIRECTORY, SearchQuery(open_now=True), at("2026-11-23T13:00"), BRUSSELS) == []
    assert domain.search(DIRECTORY, SearchQuery(open_now=True), at("2026-11-24T10:00"), BRUSSELS) == []


def test_free_text_ignores_case_and_accents_and_ranks_name_matches_first():
    found = domain.search(DIRECTORY, SearchQuery(text="LIEGE"), at("2026-11-23T10:00"), BRUSSELS)
    assert names(found) == ["Liège legal"]
    assert found[0].reasons == [{"criterion": "text", "detail": "“liege” in the name"}]
    assert names(domain.search(DIRECTORY, SearchQuery(text="shelter"), at("2026-11-23T10:00"), BRUSSELS)) == [
        "Brussels shelter", "Liège legal"]
    with pytest.raises(ValueError, match="unknown category"):
        domain.search(DIRECTORY, SearchQuery(category="astrology"), at("2026-11-23T10:00"), BRUSSELS)


def test_search_over_the_seed_open_now_on_a_monday_morning_and_a_wednesday_afternoon():
    seed = directory.load_seed()
    monday = domain.search(seed, SearchQuery(open_now=True), at("2026-11-23T10:00"), BRUSSELS)
    assert names(monday) == ["Flemish Refugee Action", "JRS Belgium"]
    wednesday = domain.search(seed, SearchQuery(open_now=True, category="legal_aid"), at("2026-11-25T14:00"), BRUSSELS)
    assert names(wednesday) == ["Flemish Refugee Action"]
    assert "Wednesday 13:30-17:00" in wednesday[0].reasons[-1]["detail"]
    dutch_fgm = domain.search(seed, SearchQuery(category="fgm_support", language="nl"), at("2026-11-23T10:00"), BRUSSELS)
    assert names(dutch_fgm) == ["Intact"]


# --- partner choice and notices ----------------------------------------------------------------


def test_automatic_referrals_take_the_configured_partner_else_one_at_home_first():
    assert domain.choose_partner(DIRECTORY, "shelter")["id"] == "d"  # Brussels before Wallonia
    assert domain.choose_partner(DIRECTORY, "shelter", exclude={"d"})["id"] == "c"
    assert domain.choose_partner(DIRECTORY, "shelter", preferred="c")["id"] == "c"
    assert domain.choose_partner(DIRECTORY, "youth_services") is None
    seed = directory.load_seed()
    assert domain.choose_partner(seed, "youth_services")["name"] == "Caritas International"
    assert domain.choose_partner(seed, "housing_search")["name"] == "CIRE"
    assert domain.choose_partner(seed, "housing_search", exclude={domain.choose_partner(seed, "housing_search")["id"]}
                                 )["name"] == "Convivial"


def test_notice_address_and_language():
    seed = {o["name"]: o for o in directory.load_seed()}
    assert domain.referral_email(seed["CIRE"]) == "cire@cire.be"
    assert domain.referral_email({**seed["CIRE"], "x_referral_email": "orientation@cire.example"}) == "orientation@cire.example"
    assert domain.referral_email(seed["Espace 28"]) is None
    assert domain.notice_language(seed["Steunpunt Asiel & Migratie vzw"]) == "nl"
    assert domain.notice_language(seed["Point d’Appui ASBL"]) == "fr"
    assert domain.notice_language({**seed["CIRE"], "x_notice_language": "fr"}) == "fr"


# --- signed links ------------------------------------------------------------------------------


class Clock:
    def __init__(self, moment: datetime):
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


def test_a_link_reads_back_and_refuses_tampering_other_secrets_and_age():
    clock = Clock(datetime(2026, 11, 23, 9, 0, tzinfo=UTC))
    links = PartnerLinks("secret-a", max_age=timedelta(days=30), base_url="https://refuge.example/", now=clock)
    token = links.token("RF-1", "nonce-1")
    assert links.url(token) == f"https://refuge.example/partner/referral?token={token}"
    claim = links.read(token)
    assert (claim.referral_ref, claim.nonce) == ("RF-1", "nonce-1")

    payload, stamp, signature = token.split(".")
    forged = links.serializer.dumps({"r": "RF-2", "n": "nonce-1"}).split(".")[0]
    for bad in (f"{forged}.{stamp}.{signature}", token[:-2] + ("AA" if token[-2:] != "AA" else "BB"), "", "garbage"):
        with pytest.raises(LinkRefused):
            links.read(bad)
    other = PartnerLinks("secret-b", max_age=timedelta(days=30), base_url="https://x", now=clock)
    with pytest.raises(LinkRefused):
        other.read(token)

    clock.moment += timedelta(days=30, seconds=1)
    with pytest.raises(LinkExpired):
        links.read(token)
