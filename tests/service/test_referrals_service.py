"""Referrals in process, against a real Redis and a real store (SQLite, and PostgreSQL when given),
with a clock the tests move by hand: the directory API, the partner's signed link through the
whole loop, the consent gate, automatic referrals and the expiry of unanswered referrals."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, date, datetime, timedelta
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import func, select

from services.referrals import directory
from services.referrals.app import create_app
from services.referrals.handlers import seed_directory
from services.referrals.settings import ReferralsSettings
from services.referrals.store import TABLES, FollowedPerson, PageNonce, PersonNeed
from shared.auth import DEV_SECRET, Role, TokenSigner
from shared.events import Envelope, stream_name
from shared.events.codes import Decision, Need, PlaceKind, Track
from shared.events.housing import PersonAdmitted, StayEnding
from shared.events.intake import ConsentGiven, ConsentWithdrawn, ErasureRequested, RequestAssessed
from shared.messaging import MESSAGING_TABLES, OutboxEntry
from shared.migrations import service_metadata, upgrade
from shared.store import make_engine
from tests.conftest import store_kinds

pytestmark = pytest.mark.parametrize("store", store_kinds())

MONDAY_10 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # 10:00 in Brussels


def headers(*roles: Role, username: str = "mahamed") -> dict[str, str]:
    return {"Authorization": f"Bearer {TokenSigner(DEV_SECRET).issue(username, roles or [Role.social_coordinator])}"}


STAFF = headers()


class Clock:
    def __init__(self, moment: datetime):
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


@pytest.fixture
async def referrals(store, make_database, redis_url, namespace):
    clock = Clock(MONDAY_10)
    settings = ReferralsSettings(redis_url=redis_url, database_url=make_database(store, "referrals"), namespace=namespace,
                                 consumer_name="referrals-test", poll_interval_ms=50, expiry_check_seconds=0.1,
                                 answer_within_hours=48, link_max_age_hours=24 * 7, public_base_url="http://partner.test")
    app = create_app(settings, now=clock)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://partner.test") as client:
            client.app, client.clock = app, clock
            yield client


async def wait_until(predicate, timeout: float = 15.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if result := await predicate():
            return result
        await asyncio.sleep(0.05)
    return None


async def publish(client, producer: str, event) -> Envelope:
    runtime = client.app.state.runtime
    envelope = Envelope.wrap(event)
    await runtime.broker.publish(envelope.model_dump(mode="json"), stream=stream_name(runtime.settings.namespace, producer))
    return envelope


async def emitted(client, event_type: str) -> list[dict]:
    async with client.app.state.runtime.sessions() as session:
        rows = (await session.exec(select(OutboxEntry).where(OutboxEntry.event_type == event_type)
                                   .order_by(OutboxEntry.id))).all()
    return [json.loads(r.body)["payload"] for r in rows]


async def partner_ref(client, name: str) -> str:
    orgs = (await client.get("/api/directory/organizations", headers=STAFF)).json()
    return next(o["partner_ref"] for o in orgs if o["name"] == name)


async def refer(client, name: str, category: str, person_ref: str = "P-0a1b2c3d4e5f", **extra) -> dict:
    response = await client.post("/api/referrals", headers=STAFF, json={
        "person_ref": person_ref, "partner_ref": await partner_ref(client, name), "category": category, **extra})
    assert response.status_code == 201, response.text
    return response.json()


async def link_of(client, referral_ref: str) -> str:
    response = await client.get(f"/api/referrals/{referral_ref}/partner-link",
                                headers={"Authorization": f"Bearer {TokenSigner(DEV_SECRET).issue('service:notify', [])}"})
    assert response.status_code == 200, response.text
    return response.json()["url"]


def token_of(url: str) -> str:
    return parse_qs(urlparse(url).query)["token"][0]


def form_fields(html: str, form_id: str) -> dict:
    form = re.search(rf'<form[^>]*id="{form_id}"[^>]*>(.*?)</form>', html, re.S)
    assert form, f"no form {form_id}"
    return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', form.group(1)))


async def answer(client, url: str, form_id: str, **choices) -> httpx.Response:
    page = await client.get(url)
    assert page.status_code == 200, page.text
    fields = form_fields(page.text, form_id)
    return await client.post("/partner/referral", data={**fields, **choices})


async def status_of(client, referral_ref: str) -> str:
    return (await client.get(f"/api/referrals/{referral_ref}", headers=STAFF)).json()["status"]


# --- directory -----------------------------------------------------------------------------------


async def test_the_seed_directory_is_searchable_exported_and_imported_back_unchanged(referrals):
    orgs = (await referrals.get("/api/directory/organizations", headers=STAFF)).json()
    assert len(orgs) == 20
    cire = next(o for o in orgs if o["name"] == "CIRE")
    assert [p["number"] for p in cire["phones"]] == ["+32 2 6297 734", "+32 2 629 77 10", "+32 2 629 77 33"]
    assert cire["email"] == "cire@cire.be" and cire["regions"] == ["brussels"]
    assert await seed_directory(referrals.app.state.runtime.sessions) == 0  # loaded once, at first start

    found = (await referrals.get("/api/directory/search", headers=STAFF,
                                 params={"category": "fgm_support", "language": "nl"})).json()
    assert [(f["name"], f["why"]) for f in found] == [
        ("Intact", "offers fgm support: “aims at becoming a ‘place of reference’ for legal issues related to FGM/C”; "
                   "phone +32(0) 497 55 04 56 answers in Dutch")]
    wallonia = (await referrals.get("/api/directory/search", headers=STAFF,
                                    params={"category": "language_integration", "region": "wallonia"})).json()
    assert [f["name"] for f in wallonia] == ["Aide aux Personnes Déplacées asbl", "Espace 28"]
    open_now = (await referrals.get("/api/directory/search", headers=STAFF, params={"open_now": "true"})).json()
    assert [f["name"] for f in open_now] == ["Flemish Refugee Action", "JRS Belgium"]  # the fixed clock: Monday 10:00
    wednesday = (await referrals.get("/api/directory/search", headers=STAFF,
                                     params={"open_now": "true", "at": "2026-11-25T14:00:00+01:00"})).json()
    assert [f["name"] for f in wednesday] == ["Flemish Refugee Action"]
    bad = await referrals.get("/api/directory/search", headers=STAFF, params={"category": "astrology"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "query.category"

    exported = await referrals.get("/api/directory/export.json", headers=STAFF)
    for org in exported.json():
        assert directory.hsds_errors(org) == [], org["name"]
    as_zip = (await referrals.get("/api/directory/export.zip", headers=STAFF)).content

    # A partner network sends a directory with one youth service more; then we restore ours from the CSV.
    youth = json.loads(json.dumps(exported.json()[0]))
    youth.update(id="5b0f1e7c-3d0a-4d8e-9a55-6a0c2f1d9e01", name="Youth service (imported)")
    youth["services"] = [dict(youth["services"][0], id="5b0f1e7c-3d0a-4d8e-9a55-6a0c2f1d9e02")]
    youth["services"][0]["attributes"] = [dict(youth["services"][0]["attributes"][0], id="5b0f1e7c-3d0a-4d8e-9a55-6a0c2f1d9e03",
                                               taxonomy_term={**youth["services"][0]["attributes"][0]["taxonomy_term"],
                                                              "code": "youth_services"})]
    for key in ("phones", "locations", "contacts"):
        youth.pop(key, None)
    added = await referrals.post("/api/directory/import", headers=STAFF, json=[youth])
    assert added.json() == {"added": 1, "updated": 0, "removed": 0, "total": 21}
    youth_now = (await referrals.get("/api/directory/search", headers=STAFF, params={"category": "youth_services"})).json()
    assert [f["name"] for f in youth_now] == ["Caritas International", "Youth service (imported)"]

    restored = await referrals.post("/api/directory/import.zip?replace=true", headers=STAFF, content=as_zip)
    assert restored.json() == {"added": 0, "updated": 0, "removed": 1, "total": 20}
    again = await referrals.get("/api/directory/export.json", headers=STAFF)
    assert again.content == exported.content

    refused = await referrals.post("/api/directory/import", headers=STAFF, json=[{"id": "x", "name": "No description"}])
    assert refused.status_code == 422
    assert {e["field"] for e in refused.json()["detail"]} == {"organizations[0]", "organizations[0].id"}
    worker = await referrals.post("/api/directory/import", headers=headers(Role.intake_worker), json=[youth])
    assert worker.status_code == 403
    assert (await referrals.get("/api/directory/organizations")).status_code == 401


# --- the closed loop through the partner's link -------------------------------------------------------


async def test_a_partner_accepts_then_completes_or_declines_through_the_signed_link(referrals):
    made = await refer(referrals, "CIRE", "housing_search")
    assert made["status"] == "pending" and made["shares_personal_data"] is False
    assert made["respond_by"].startswith("2026-11-25T09:00")
    url = await link_of(referrals, made["referral_ref"])
    assert url.startswith("http://partner.test/partner/referral?token=")

    page = await referrals.get(url)
    assert page.status_code == 200
    assert page.headers["referrer-policy"] == "no-referrer" and page.headers["cache-control"] == "no-store"
    assert "Housing search" in page.text and made["referral_ref"] in page.text
    assert made["person_ref"] not in page.text  # the partner learns the referral, not the person
    assert 'data-shares="no"' in page.text and "anonymous" in page.text

    accepted = await answer(referrals, url, "accept")
    assert accepted.status_code == 303
    after = await referrals.get(accepted.headers["location"])
    assert 'data-status="accepted"' in after.text and 'id="done"' in after.text and 'id="complete"' in after.text

    completed = await answer(referrals, url, "complete", outcome="got_help")
    assert completed.status_code == 303
    detail = (await referrals.get(f"/api/referrals/{made['referral_ref']}", headers=STAFF)).json()
    assert (detail["status"], detail["outcome"]) == ("completed", "got_help")
    assert [(h["from_status"], h["to_status"], h["actor_kind"]) for h in detail["history"]] == [
        (None, "pending", "staff"), ("pending", "accepted", "partner"), ("accepted", "completed", "partner")]
    closed = await referrals.get(url)
    assert 'id="closed"' in closed.text and "<form" not in closed.text

    declined_ref = (await refer(referrals, "Convivial", "housing_search"))["referral_ref"]
    declined_url = await link_of(referrals, declined_ref)
    missing = await answer(referrals, declined_url, "decline")
    assert missing.status_code == 422 and await status_of(referrals, declined_ref) == "pending"
    declined = await answer(referrals, declined_url, "decline", reason_code="no_capacity", lang="fr")
    assert declined.status_code == 303
    assert "refus" in (await referrals.get(declined.headers["location"])).text
    unsuccessful_ref = (await refer(referrals, "Groupe Sireas", "legal_aid"))["referral_ref"]
    unsuccessful_url = await link_of(referrals, unsuccessful_ref)
    await answer(referrals, unsuccessful_url, "accept")
    await answer(referrals, unsuccessful_url, "complete", outcome="not_successful", reason_code="person_did_not_come")

    changes = await emitted(referrals, "ReferralStatusChanged")
    assert [(c["referral_ref"], c["previous_status"], c["status"], c["reason_code"], c["outcome"]) for c in changes] == [
        (made["referral_ref"], "pending", "accepted", None, None),
        (made["referral_ref"], "accepted", "completed", None, "got_help"),
        (declined_ref, "pending", "declined", "no_capacity", None),
        (unsuccessful_ref, "pending", "accepted", None, None),
        (unsuccessful_ref, "accepted", "completed", "person_did_not_come", "not_successful"),
    ]
    made_events = await emitted(referrals, "ReferralMade")
    assert [e["referral_ref"] for e in made_events] == [made["referral_ref"], declined_ref, unsuccessful_ref]
    assert made_events[0]["service_category"] == "housing_search" and made_events[0]["origin"] == "staff"
    assert await wait_until(lambda: _all_published(referrals))


async def _all_published(client) -> bool:
    return await client.app.state.runtime.relay.backlog() == 0


async def test_a_tampered_expired_or_replayed_link_changes_nothing(referrals):
    made = await refer(referrals, "Myria", "legal_aid")
    ref = made["referral_ref"]
    url = await link_of(referrals, ref)
    token = token_of(url)
    page = await referrals.get(url)
    fields = form_fields(page.text, "accept")

    # Tampered: a changed signature, a token signed for another referral, a token of another secret.
    # The first character is changed: the last one of unpadded base64 holds bits that decoding drops.
    payload, stamp, signature = token.split(".")
    for forged in (f"{payload}.{stamp}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}",
                   TokenSigner("another-secret").issue("x", []), "", "not-a-token"):
        shown = await referrals.get("/partner/referral", params={"token": forged})
        assert shown.status_code == 400 and "This link is not valid" in shown.text
        posted = await referrals.post("/partner/referral", data={**fields, "token": forged})
        assert posted.status_code == 400
    other = (await refer(referrals, "NANSEN", "legal_aid"))["referral_ref"]
    other_fields = form_fields((await referrals.get(await link_of(referrals, other))).text, "accept")
    crossed = await referrals.post("/partner/referral", data={**other_fields, "token": token})  # nonce of another page
    assert crossed.status_code == 409
    no_nonce = await referrals.post("/partner/referral", data={**fields, "page_nonce": ""})
    assert no_nonce.status_code == 409
    assert await status_of(referrals, ref) == "pending" and await status_of(referrals, other) == "pending"

    # Replayed: the same form twice, then the same nonce for another action.
    first = await referrals.post("/partner/referral", data=fields)
    assert first.status_code == 303 and await status_of(referrals, ref) == "accepted"
    replay = await referrals.post("/partner/referral", data=fields)
    assert replay.status_code == 409 and "Nothing was changed" in replay.text
    swapped = await referrals.post("/partner/referral", data={**fields, "action": "complete", "outcome": "got_help"})
    assert swapped.status_code == 409
    assert await status_of(referrals, ref) == "accepted"

    # Expired: a week later (the links' lifetime here) the same link is refused, and so are its forms.
    complete_fields = form_fields((await referrals.get(url)).text, "complete")
    referrals.clock.moment += timedelta(days=7, seconds=1)
    late = await referrals.get(url)
    assert late.status_code == 410 and "This link has expired" in late.text
    late_post = await referrals.post("/partner/referral", data={**complete_fields, "outcome": "got_help"})
    assert late_post.status_code == 410
    assert await status_of(referrals, ref) == "accepted"
    assert [c["status"] for c in await emitted(referrals, "ReferralStatusChanged") if c["referral_ref"] == ref] == [
        "accepted"]

    # A fresh link from notify works again.
    fresh = await link_of(referrals, ref)
    assert (await answer(referrals, fresh, "complete", outcome="got_help")).status_code == 303
    assert await status_of(referrals, ref) == "completed"


# --- consent gate --------------------------------------------------------------------------------


async def test_personal_data_goes_to_a_partner_only_with_consent_or_a_recorded_override(referrals):
    caritas = await partner_ref(referrals, "Caritas International")
    person = "P-c0ffee000001"
    refused = await referrals.post("/api/referrals", headers=STAFF, json={
        "person_ref": person, "partner_ref": caritas, "category": "family_reunification", "share_personal_data": True})
    assert refused.status_code == 422 and refused.json()["detail"][0]["field"] == "override_reason"
    assert await emitted(referrals, "ReferralMade") == []

    anonymous = await refer(referrals, "Caritas International", "family_reunification", person_ref=person)
    assert anonymous["shares_personal_data"] is False

    await publish(referrals, "intake", ConsentGiven(consent_ref="C-1", person_ref=person, partner_ref=caritas,
                                                    purpose="family_reunification", expires_on=date(2027, 1, 1)))
    assert await wait_until(lambda: _consents(referrals, person, 1))
    shared = await refer(referrals, "Caritas International", "family_reunification", person_ref=person,
                         share_personal_data=True)
    assert shared["shares_personal_data"] is True and shared["consent_ref"] == "C-1"
    shared_url = await link_of(referrals, shared["referral_ref"])
    assert 'data-shares="yes"' in (await referrals.get(shared_url)).text
    assert 'data-shares="no"' in (await referrals.get(await link_of(referrals, anonymous["referral_ref"]))).text
    other_purpose = await referrals.post("/api/referrals", headers=STAFF, json={
        "person_ref": person, "partner_ref": caritas, "category": "shelter", "share_personal_data": True})
    assert other_purpose.status_code == 422  # consent was for family reunification only

    samusocial = await partner_ref(referrals, "Samusocial")
    override = await refer(referrals, "Samusocial", "shelter", person_ref=person, share_personal_data=True,
                           override_reason="Person in danger tonight; agreed by phone, consent form to follow")
    assert override["shares_personal_data"] is True and override["override_by"] == "mahamed"
    assert override["override_reason"].startswith("Person in danger tonight")

    # Withdrawing stops further sharing, on every page shown from now on.
    await publish(referrals, "intake", ConsentWithdrawn(consent_ref="C-1", person_ref=person, partner_ref=caritas,
                                                        purpose="family_reunification"))
    await publish(referrals, "intake", ConsentWithdrawn(consent_ref="C-2", person_ref=person, partner_ref=samusocial,
                                                        purpose="referral"))
    assert await wait_until(lambda: _consents(referrals, person, 2, withdrawn=True))
    assert 'data-shares="no"' in (await referrals.get(shared_url)).text
    assert 'data-shares="no"' in (await referrals.get(await link_of(referrals, override["referral_ref"]))).text
    person_view = (await referrals.get(f"/api/people/{person}", headers=STAFF)).json()
    assert {r["referral_ref"]: r["shares_personal_data"] for r in person_view["referrals"]} == {
        anonymous["referral_ref"]: False, shared["referral_ref"]: False, override["referral_ref"]: False}
    made = await emitted(referrals, "ReferralMade")
    assert [m["shares_personal_data"] for m in made] == [False, True, True]
    raw = json.dumps(made) + json.dumps(await emitted(referrals, "ReferralStatusChanged"))
    assert "danger" not in raw and "phone" not in raw  # the override's reason stays in referrals' store


async def _consents(client, person_ref: str, count: int, withdrawn: bool = False) -> bool:
    consents = (await client.get(f"/api/people/{person_ref}", headers=STAFF)).json()["consents"]
    return sum(1 for c in consents if c["withdrawn"] == withdrawn) == count


# --- automatic referrals and expiry --------------------------------------------------------------


async def test_a_minor_is_referred_to_youth_services_and_a_stay_ending_to_housing_search(referrals):
    minor = RequestAssessed(request_ref="R-minor0000001", person_ref="P-minor0000001", decision=Decision.refer,
                            track=Track.minor, needs=(Need.accommodation, Need.social))
    first = await publish(referrals, "intake", minor)
    await publish(referrals, "intake", minor)  # the same request assessed twice (a second event id)
    youth = await wait_until(lambda: _referrals_of(referrals, "P-minor0000001"))
    await wait_until(lambda: _inbox_count(referrals, 2))
    assert len(await _referrals_of(referrals, "P-minor0000001")) == 1
    (referral,) = youth
    caritas = await partner_ref(referrals, "Caritas International")
    assert (referral["category"], referral["partner_ref"], referral["origin"], referral["cause_ref"]) == (
        "youth_services", caritas, "minor_request", "R-minor0000001")
    assert referral["shares_personal_data"] is False  # no consent recorded: anonymous
    (made,) = await emitted(referrals, "ReferralMade")
    assert made["origin"] == "minor_request" and made["partner_ref"] == caritas
    followed = (await referrals.get("/api/followed", headers=STAFF)).json()
    assert [(f["person_ref"], f["reason"]) for f in followed] == [("P-minor0000001", "refer")]
    async with referrals.app.state.runtime.sessions() as session:
        row = (await session.exec(select(OutboxEntry).where(OutboxEntry.event_type == "ReferralMade"))).one()
    assert Envelope.model_validate_json(row.body).causation_id == first.event_id

    # A stay ends: a housing-search referral only for someone whose case file has that need.
    adult = "P-adult000001"
    await publish(referrals, "intake", RequestAssessed(
        request_ref="R-adult000001", person_ref=adult, decision=Decision.accommodate, track=Track.youth,
        place_kind=PlaceKind.emergency, needs=(Need.housing_search, Need.legal)))
    await publish(referrals, "intake", RequestAssessed(
        request_ref="R-other000001", person_ref="P-other000001", decision=Decision.accommodate, track=Track.youth,
        place_kind=PlaceKind.emergency, needs=(Need.legal,)))
    assert await wait_until(lambda: _needs_known(referrals, adult, "P-other000001"))
    await publish(referrals, "housing", StayEnding(stay_ref="S-other", person_ref="P-other000001",
                                                   planned_end=date(2027, 2, 1), days_before=14))
    await publish(referrals, "housing", StayEnding(stay_ref="S-adult", person_ref=adult,
                                                   planned_end=date(2027, 2, 1), days_before=14))
    (housing,) = await wait_until(lambda: _referrals_of(referrals, adult))
    assert (housing["category"], housing["partner_name"], housing["origin"], housing["cause_ref"]) == (
        "housing_search", "CIRE", "stay_ending", "S-adult")
    assert await _referrals_of(referrals, "P-other000001") == []

    # CIRE declines; the notice three days before goes to the next partner, never twice to CIRE.
    await answer(referrals, await link_of(referrals, housing["referral_ref"]), "decline", reason_code="no_capacity")
    await publish(referrals, "housing", StayEnding(stay_ref="S-adult", person_ref=adult,
                                                   planned_end=date(2027, 2, 1), days_before=3))
    both = await wait_until(lambda: _referrals_of(referrals, adult, 2))
    assert [(r["partner_name"], r["status"]) for r in both] == [("Convivial", "pending"), ("CIRE", "declined")]
    view = (await referrals.get(f"/api/people/{adult}", headers=STAFF)).json()
    assert view["needs"] == ["housing_search", "legal"] and view["open_needs"] == ["legal"]


async def _needs_known(client, *person_refs: str) -> bool:
    # intake's and housing's streams are read independently: the needs must be in before the stay ends
    people = [(await client.get(f"/api/people/{ref}", headers=STAFF)).json() for ref in person_refs]
    return all(p["needs"] for p in people)


async def _referrals_of(client, person_ref: str, count: int = 1):
    found = (await client.get("/api/referrals", params={"person_ref": person_ref}, headers=STAFF)).json()
    return found if len(found) >= count else []


async def _inbox_count(client, count: int) -> bool:
    return client.app.state.runtime.consumer.stats["processed"] + client.app.state.runtime.consumer.stats["duplicates"] >= count


async def test_a_referral_nobody_answers_expires_and_staff_can_revoke_one(referrals):
    quiet = await refer(referrals, "ADDE", "legal_aid")
    answered = await refer(referrals, "NANSEN", "legal_aid")
    await answer(referrals, await link_of(referrals, answered["referral_ref"]), "accept")
    revoked = await refer(referrals, "Myria", "legal_aid")
    response = await referrals.post(f"/api/referrals/{revoked['referral_ref']}/revoke", headers=STAFF,
                                    json={"reason_code": "need_met_elsewhere"})
    assert response.status_code == 200 and response.json()["status"] == "revoked"
    again = await referrals.post(f"/api/referrals/{revoked['referral_ref']}/revoke", headers=STAFF)
    assert again.status_code == 409
    revoked_page = await referrals.get(await link_of(referrals, revoked["referral_ref"]))
    assert "withdrawn this referral" in revoked_page.text and "<form" not in revoked_page.text

    await asyncio.sleep(0.3)  # the expiry clock runs; nothing is due yet
    assert await status_of(referrals, quiet["referral_ref"]) == "pending"
    referrals.clock.moment += timedelta(hours=48)
    assert await wait_until(lambda: _status_is(referrals, quiet["referral_ref"], "expired"))
    assert await status_of(referrals, answered["referral_ref"]) == "accepted"
    changes = [(c["referral_ref"], c["status"], c["reason_code"], c["actor_kind"])
               for c in await emitted(referrals, "ReferralStatusChanged")]
    assert (quiet["referral_ref"], "expired", "no_answer", "system") in changes
    assert sum(1 for c in changes if c[1] == "expired") == 1
    assert (revoked["referral_ref"], "revoked", "need_met_elsewhere", "staff") in changes
    late = await referrals.get(await link_of(referrals, quiet["referral_ref"]))
    assert "expired without an answer" in late.text and "<form" not in late.text

    # Page nonces live as long as links do.
    runtime = referrals.app.state.runtime
    assert await _page_nonces(runtime) == 1  # the page NANSEN accepted from; closed referrals get no forms
    referrals.clock.moment += timedelta(days=7)
    await referrals.app.state.referrals.forget_old_page_nonces(runtime.uow)
    assert await _page_nonces(runtime) == 0


async def _page_nonces(runtime) -> int:
    async with runtime.sessions() as session:
        return (await session.exec(select(func.count()).select_from(PageNonce))).one()


async def _status_is(client, referral_ref: str, status: str) -> bool:
    return await status_of(client, referral_ref) == status


async def test_the_migrations_build_the_store_the_models_describe(store, make_database):
    engine = make_engine(make_database(store, "referrals_migrations"))
    try:
        await upgrade(engine, "referrals")
        async with engine.connect() as conn:
            diff = await conn.run_sync(lambda c: compare_metadata(
                MigrationContext.configure(c, opts={"compare_type": True}),
                service_metadata([*MESSAGING_TABLES, *TABLES])))
        assert [d for d in diff if not (isinstance(d, tuple) and d[0] == "remove_table" and
                                        d[1].name.startswith("alembic_version"))] == []
    finally:
        await engine.dispose()


async def test_events_read_in_one_batch_leave_what_they_would_leave_one_by_one(referrals):
    """One batch: the same person assessed, admitted and assessed again, and someone erased between
    two of their events; the reads made once for the batch must not hide what the batch wrote."""
    runtime = referrals.app.state.runtime
    twice, erased = "P-batch0000001", "P-batch0000002"

    def assessed(person_ref: str, *needs: Need) -> Envelope:
        return Envelope.wrap(RequestAssessed(request_ref=f"R-{person_ref[2:]}", person_ref=person_ref,
                                             decision=Decision.accommodate, track=Track.youth,
                                             place_kind=PlaceKind.emergency, needs=needs))

    batch = [
        assessed(twice, Need.housing_search, Need.legal),
        Envelope.wrap(PersonAdmitted(stay_ref="S-batch1", person_ref=twice, place_ref="PL-001",
                                     place_kind=PlaceKind.emergency, starts_on=date(2026, 11, 23),
                                     planned_end=date(2027, 2, 23))),
        assessed(erased, Need.legal),
        assessed(twice, Need.legal, Need.administrative),
        Envelope.wrap(ErasureRequested(erasure_ref="E-batch1", person_ref=erased)),
        assessed(erased, Need.social),
    ]
    stream = stream_name(runtime.settings.namespace, "intake")
    await runtime.consumer.consume(stream, [(f"1-{n}".encode(), e.model_dump_json().encode()) for n, e in enumerate(batch)],
                                   reclaimed=False)

    assert runtime.consumer.stats["processed"] == len(batch) and runtime.consumer.stats["failed"] == 0
    followed = {f["person_ref"]: f for f in (await referrals.get("/api/followed", headers=STAFF)).json()}
    assert set(followed) == {twice, erased}
    async with runtime.sessions() as session:
        rows = (await session.exec(select(FollowedPerson))).all()
        needs = (await session.exec(select(PersonNeed.person_ref, PersonNeed.need))).all()
    assert {r.person_ref: r.last_event for r in rows} == {twice: "RequestAssessed", erased: "RequestAssessed"}
    assert sorted(needs) == sorted([(twice, "housing_search"), (twice, "legal"), (twice, "administrative"), (erased, "social")])
    assert sorted(e["person_ref"] for e in await emitted(referrals, "PersonFollowed")) == sorted([twice, erased, erased])
    (confirmed,) = await emitted(referrals, "ErasureConfirmed")
    assert confirmed["records_erased"] == 2  # the follow-up and the need recorded earlier in the batch
