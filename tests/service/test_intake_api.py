"""Intake's API in process, against a real Redis and a real store (SQLite, and PostgreSQL when given)."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
from sqlmodel import func, select

from services.intake.app import create_app
from services.intake.settings import IntakeSettings
from services.intake.store import CaseFile, HelpRequest
from shared.auth import DEV_SECRET, Role, TokenSigner
from shared.events import Envelope, stream_name
from shared.events.codes import ExitDestination, PlaceKind
from shared.events.housing import PersonAdmitted, PersonDischarged
from shared.messaging import OutboxEntry
from tests.conftest import store_kinds

pytestmark = pytest.mark.parametrize("store", store_kinds())


def headers(*roles: Role, username: str = "sam.worker") -> dict[str, str]:
    return {"Authorization": f"Bearer {TokenSigner(DEV_SECRET).issue(username, roles or [Role.intake_worker])}"}


STAFF = headers()
YEAR = date.today().year

CALL = {
    "name": "Noor Vandenberghe",
    "date_of_birth": f"{YEAR - 21}-01-15",
    "language": "nl",
    "phone": "+32 470 12 34 56",
    "safe_to_leave_message": False,
    "channel": "phone",
    "situation": "excluded",
    "urgency": "immediate",
    "needs": ["accommodation", "mental_health", "accommodation"],
    "notes": "Sleeping at the station since Friday",
}


@pytest.fixture
async def intake(store, make_database, redis_url, namespace, tmp_path):
    # Nothing listens on port 9: the other services are unreachable here, whatever runs on this machine.
    settings = IntakeSettings(redis_url=redis_url, database_url=make_database(store, "intake"), namespace=namespace,
                              consumer_name="intake-test", poll_interval_ms=50, counters_cache_seconds=0,
                              keys_database_url=f"sqlite+aiosqlite:///{tmp_path / 'intake-keys.db'}",
                              housing_url="http://127.0.0.1:9", referrals_url="http://127.0.0.1:9",
                              notify_url="http://127.0.0.1:9")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://intake.test") as client:
            client.app = app
            yield client


async def outbox(client, event_type: str) -> list[Envelope]:
    async with client.app.state.runtime.sessions() as session:
        rows = (await session.exec(select(OutboxEntry).where(OutboxEntry.event_type == event_type))).all()
    return [Envelope.model_validate_json(r.body) for r in rows]


async def count(client, model, *where) -> int:
    async with client.app.state.runtime.sessions() as session:
        return (await session.exec(select(func.count()).select_from(model).where(*where))).one()


async def test_a_call_is_recorded_assessed_and_announced_without_personal_data(intake):
    response = await intake.post("/api/requests", json=CALL, headers=STAFF)
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["decision"], body["track"], body["place_kind"]) == ("accommodate", "youth", "emergency")
    assert body["recorded_by"] == "sam.worker" and body["decided_by"] == "rules"
    assert body["needs"] == ["accommodation", "mental_health"]
    assert {r["rule"]: r["passed"] for r in body["rules"]} == {"adult": True, "youth_age_band": True,
                                                                "excluded_for_identity": True}

    again = await intake.get(f"/api/requests/{body['request_ref']}", headers=STAFF)
    assert again.json()["decision"] == "accommodate" and len(again.json()["history"]) == 1

    (assessed,) = await outbox(intake, "RequestAssessed")
    assert assessed.payload["person_ref"] == body["person_ref"] and assessed.payload["decision"] == "accommodate"
    (received,) = await outbox(intake, "RequestReceived")
    assert assessed.causation_id == received.event_id
    raw = assessed.model_dump_json() + received.model_dump_json()
    for secret in ("Noor", "Vandenberghe", "470 12 34 56", CALL["date_of_birth"], "station"):
        assert secret not in raw

    case = (await intake.get(f"/api/case-files/{body['person_ref']}", headers=STAFF)).json()
    assert case["name"] == "Noor Vandenberghe" and case["age"] == 21 and case["language"] == "nl"
    assert case["where_now"] == "assessed"


async def test_bad_input_is_refused_field_by_field_and_nothing_is_recorded(intake):
    cases = [
        ({"email": "not-an-address"}, "email"),
        ({"date_of_birth": None}, "stated_age"),
        ({"date_of_birth": (date.today() + timedelta(days=2)).isoformat()}, "date_of_birth"),
        ({"cadal": {"fedasil_designation_ref": "FED-1"}}, "cadal"),
        ({"name": "Noor\x00"}, "name"),
        ({"person_ref": "P-000000000000"}, "person_ref"),
        ({"preferred_contact": "email"}, "preferred_contact"),
        ({"needs": ["a roof"]}, "needs.0"),
    ]
    for change, field in cases:
        response = await intake.post("/api/requests", json={**CALL, **change}, headers=STAFF)
        assert response.status_code == 422, (change, response.text)
        assert [e["field"] for e in response.json()["detail"]] == [field], response.text
        assert "Noor" not in response.text and "not-an-address" not in response.text
    assert await count(intake, HelpRequest) == 0
    assert await outbox(intake, "RequestAssessed") == []
    assert (await intake.post("/api/requests", json=CALL)).status_code == 401


async def test_what_does_not_exist_or_is_not_yours_to_see_is_a_404(intake):
    assert (await intake.get("/api/requests/R-000000000000", headers=STAFF)).status_code == 404
    assert (await intake.get("/api/case-files/P-000000000000", headers=STAFF)).status_code == 404
    assert (await intake.get("/api/people/P-000000000000/timeline", headers=STAFF)).status_code == 404
    assert (await intake.post("/api/requests/R-000000000000/override", headers=STAFF,
                              json={"decision": "decline", "reason": "x"})).status_code == 404
    person_ref = (await intake.post("/api/requests", json=CALL, headers=STAFF)).json()["person_ref"]
    housing_only = headers(Role.housing, username="lou.logistics")
    assert (await intake.get(f"/api/case-files/{person_ref}", headers=housing_only)).status_code == 404
    assert (await intake.post("/api/requests", json=CALL, headers=housing_only)).status_code == 403


async def test_a_minor_is_referred_with_a_follow_up_in_the_queue_and_can_never_be_given_a_place(intake):
    minor = (await intake.post("/api/requests", headers=STAFF,
                               json={**CALL, "date_of_birth": None, "stated_age": 16})).json()
    assert (minor["decision"], minor["track"], minor["place_kind"]) == ("refer", "minor", None)
    assert minor["refer_to"] == "youth_services"
    follow_up_on = date.fromisoformat(minor["follow_up_on"])
    assert follow_up_on == app_today(intake) + timedelta(days=7)
    (assessed,) = await outbox(intake, "RequestAssessed")
    assert assessed.payload["follow_up_on"] == follow_up_on.isoformat() and assessed.payload["refer_to"] == "youth_services"

    refused = await intake.post(f"/api/requests/{minor['request_ref']}/override", headers=STAFF,
                                json={"decision": "accommodate", "place_kind": "emergency", "reason": "a place is free"})
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["field"] == "decision"
    assert len(await outbox(intake, "RequestAssessed")) == 1

    # The follow-up shows in the queue once due, and leaves it once done.
    intake.app.state.intake.now = lambda: datetime.now(UTC) + timedelta(days=7)
    queue = (await intake.get("/api/queue", headers=STAFF)).json()
    assert [i["request_ref"] for i in queue["pending"]] == [minor["request_ref"]]
    assert queue["pending"][0]["follow_up_due"] is True
    done = await intake.post(f"/api/requests/{minor['request_ref']}/follow-up", headers=STAFF,
                             json={"note": "youth services (SAJ) took over", "next_follow_up_on": None})
    assert done.status_code == 200 and done.json()["done_by"] == "sam.worker"
    assert (await intake.get("/api/queue", headers=STAFF)).json()["pending"] == []


def app_today(client) -> date:
    return client.app.state.intake.today()


async def test_outside_the_band_waits_for_a_staff_decision_which_records_who_when_and_why(intake):
    older = (await intake.post("/api/requests", headers=STAFF,
                               json={**CALL, "date_of_birth": f"{YEAR - 28}-01-01"})).json()
    assert older["decision"] == "decline" and older["needs_review"] is True
    queue = (await intake.get("/api/queue", headers=STAFF)).json()
    assert [i["request_ref"] for i in queue["pending"]] == [older["request_ref"]] and queue["new"] == []

    coordinator = headers(Role.social_coordinator, username="ines.coord")
    decided = await intake.post(f"/api/requests/{older['request_ref']}/override", headers=coordinator,
                                json={"decision": "accommodate", "reason": "followed by our team since last year"})
    assert decided.status_code == 200, decided.text
    body = decided.json()
    assert (body["decision"], body["place_kind"], body["needs_review"]) == ("accommodate", "emergency", False)
    assert body["decided_by"] == "ines.coord" and body["override_reason"] == "followed by our team since last year"
    assert [h["decided_by"] for h in body["history"]] == ["rules", "ines.coord"]
    assert body["rules"][-1]["rule"] == "staff_override"
    events = await outbox(intake, "RequestAssessed")
    assert [e.payload["decision"] for e in events] == ["decline", "accommodate"]
    assert events[-1].payload["overridden"] is True and "followed" not in events[-1].model_dump_json()
    queue = (await intake.get("/api/queue", headers=STAFF)).json()
    assert queue["pending"] == [] and [i["request_ref"] for i in queue["new"]] == [older["request_ref"]]


async def test_a_second_call_is_linked_to_the_case_file_once_staff_confirm_the_match(intake):
    first = (await intake.post("/api/requests", json=CALL, headers=STAFF)).json()
    matches = (await intake.post("/api/case-files/matches", headers=STAFF,
                                 json={"name": "noor vandenberghe", "phone": "0470/12.34.56"})).json()
    assert [(m["person_ref"], m["reasons"]) for m in matches] == [(first["person_ref"], ["same_name", "same_phone"])]
    assert (await intake.post("/api/case-files/matches", headers=STAFF, json={"name": "Someone Else"})).json() == []

    second = (await intake.post("/api/requests", headers=STAFF,
                                json={**CALL, "person_ref": first["person_ref"], "channel": "walk_in",
                                      "email": "noor@example.org"})).json()
    assert second["person_ref"] == first["person_ref"] and second["request_ref"] != first["request_ref"]
    case = (await intake.get(f"/api/case-files/{first['person_ref']}", headers=STAFF)).json()
    assert [r["request_ref"] for r in case["requests"]] == [second["request_ref"], first["request_ref"]]
    assert case["email"] == "noor@example.org" and case["phone"] == CALL["phone"]
    assert await count(intake, CaseFile) == 1

    found = (await intake.get("/api/case-files", params={"q": "vandenb"}, headers=STAFF)).json()
    assert [f["person_ref"] for f in found] == [first["person_ref"]]
    assert found[0]["last_request_ref"] == second["request_ref"]
    by_ref = (await intake.get("/api/case-files", params={"q": second["request_ref"].upper()}, headers=STAFF)).json()
    assert [f["person_ref"] for f in by_ref] == [first["person_ref"]]
    assert (await intake.get("/api/case-files", params={"q": "100%_"}, headers=STAFF)).json() == []


async def test_cadal_needs_all_five_criteria_and_a_staff_member_cannot_skip_one(intake):
    criteria = {"fedasil_designation_ref": "FED-2026-118", "lgbtqia_asylum_seeker": True, "faces_discrimination": True,
                "mental_health_compatible": True, "accepts_house_rules": False}
    call = {**CALL, "channel": "fedasil", "situation": "asylum_reception", "date_of_birth": f"{YEAR - 34}-03-03",
            "cadal": criteria}
    refused = (await intake.post("/api/requests", json=call, headers=STAFF)).json()
    assert (refused["decision"], refused["track"]) == ("decline", "cadal")
    assert [r["rule"] for r in refused["rules"] if not r["passed"]] == ["cadal_accepts_house_rules"]
    override = await intake.post(f"/api/requests/{refused['request_ref']}/override", headers=STAFF,
                                 json={"decision": "accommodate", "reason": "she will sign tomorrow"})
    assert override.status_code == 422

    admitted = (await intake.post("/api/requests", headers=STAFF,
                                  json={**call, "cadal": {**criteria, "accepts_house_rules": True}})).json()
    assert (admitted["decision"], admitted["track"], admitted["place_kind"]) == ("accommodate", "cadal", "cadal")
    designation = next(r for r in admitted["rules"] if r["rule"] == "cadal_fedasil_designation")
    assert designation["inputs"]["fedasil_designation_ref"] == "FED-2026-118"
    assert "FED-2026-118" not in "".join(e.model_dump_json() for e in await outbox(intake, "RequestAssessed"))


async def test_other_services_events_build_the_timeline_and_the_public_counters(intake, namespace):
    people = []
    for _ in range(6):
        people.append((await intake.post("/api/requests", json=CALL, headers=STAFF)).json()["person_ref"])
    runtime = intake.app.state.runtime
    today = date.today()
    for person_ref in people:
        admitted = Envelope.wrap(PersonAdmitted(stay_ref=f"S-{person_ref[2:]}", person_ref=person_ref, place_ref="PL-001",
                                                place_kind=PlaceKind.emergency, starts_on=today,
                                                planned_end=today + timedelta(days=90)))
        await runtime.broker.publish(admitted.model_dump(mode="json"), stream=stream_name(namespace, "housing"))
    discharged = Envelope.wrap(PersonDischarged(stay_ref="S-x", person_ref=people[0], place_ref="PL-001",
                                                destination=ExitDestination.own_housing, planned=True, safe=True))
    await runtime.broker.publish(discharged.model_dump(mode="json"), stream=stream_name(namespace, "housing"))

    async def arrived():
        timeline = (await intake.get(f"/api/people/{people[0]}/timeline", headers=STAFF)).json()
        return [t["event_type"] for t in timeline] == ["PersonAdmitted", "PersonDischarged"]

    assert await wait_until(arrived)
    assert (await intake.get(f"/api/case-files/{people[0]}", headers=STAFF)).json()["where_now"] == "discharged"
    assert (await intake.get(f"/api/case-files/{people[1]}", headers=STAFF)).json()["where_now"] == "in_stay"
    await wait_until(lambda: _timeline_count(intake, 7))

    public = await intake.get("/api/public/counters")
    assert public.status_code == 200
    shown = {c["key"]: c["shown"] for c in public.json()["counters"]}
    assert shown == {"young_people_accommodated": "5+", "young_people_supported": "5+", "requests_processed": "5+"}
    assert "Noor" not in public.text and people[0] not in public.text


async def _timeline_count(client, n):
    from services.intake.store import TimelineEntry

    return await count(client, TimelineEntry) == n


async def wait_until(predicate, timeout=15.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.05)
    return False


async def test_sign_in_issues_the_shared_token_in_a_strict_cookie_and_a_deactivated_account_is_refused(intake):
    sessions = intake.app.state.runtime.sessions
    staff_accounts = intake.app.state.staff_accounts
    await staff_accounts.create("Maya", "correct horse battery", [Role.intake_worker])
    wrong = await intake.post("/api/session", json={"username": "maya", "password": "wrong horse battery"})
    unknown = await intake.post("/api/session", json={"username": "nobody", "password": "correct horse battery"})
    assert wrong.status_code == unknown.status_code == 401 and wrong.json() == unknown.json()

    signed_in = await intake.post("/api/session", json={"username": "maya", "password": "correct horse battery"})
    assert signed_in.status_code == 200
    token = signed_in.json()["token"]
    assert TokenSigner(DEV_SECRET).verify(token).username == "maya"
    cookie = signed_in.headers["set-cookie"]
    assert cookie.startswith(f"refuge_token={token}") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert (await intake.get("/api/queue", headers={"Authorization": f"Bearer {token}"})).status_code == 200

    async with sessions() as session:
        from services.intake.store import StaffAccount

        stored = (await session.exec(select(StaffAccount))).one()
    assert stored.password_hash.startswith("$argon2id$") and "correct horse" not in stored.password_hash

    await staff_accounts.update("maya", active=False)
    assert (await intake.get("/api/queue", headers={"Authorization": f"Bearer {token}"})).status_code == 401
    again = await intake.post("/api/session", json={"username": "maya", "password": "correct horse battery"})
    assert again.status_code == 401


async def test_calls_recorded_at_the_same_moment_each_keep_their_own_case_file_events_and_trace(intake):
    names = [f"Caller {tree}" for tree in ("Alder", "Birch", "Cedar", "Dogwood", "Elm", "Fir", "Ginkgo", "Hazel", "Ivy",
                                           "Juniper", "Kauri", "Larch")]
    unknown = {**CALL, "person_ref": "P" + "0" * 12}
    *responses, refused = await asyncio.gather(
        *(intake.post("/api/requests", json={**CALL, "name": name}, headers=STAFF) for name in names),
        intake.post("/api/requests", json=unknown, headers=STAFF))
    assert refused.status_code == 422 and "person_ref" in refused.text
    assert all(r.status_code == 201 for r in responses), [r.text for r in responses]
    recorded = {r.json()["request_ref"]: r.json()["person_ref"] for r in responses}
    assert len(recorded) == 12 and len(set(recorded.values())) == 12
    for name, response in zip(names, responses, strict=True):  # each case file holds its own caller's name
        found = await intake.get("/api/case-files", params={"q": name.split()[1]}, headers=headers(Role.social_coordinator))
        assert [c["person_ref"] for c in found.json()] == [response.json()["person_ref"]]

    received = {e.payload["request_ref"]: e for e in await outbox(intake, "RequestReceived")}
    assessed = {e.payload["request_ref"]: e for e in await outbox(intake, "RequestAssessed")}
    assert set(received) == set(assessed) == set(recorded)
    traces = set()
    for request_ref, person_ref in recorded.items():
        assert received[request_ref].payload["person_ref"] == assessed[request_ref].payload["person_ref"] == person_ref
        assert assessed[request_ref].causation_id == received[request_ref].event_id
        assert received[request_ref].traceparent is not None
        assert received[request_ref].traceparent.split("-")[1] == assessed[request_ref].traceparent.split("-")[1]
        traces.add(received[request_ref].traceparent.split("-")[1])
    assert len(traces) == 12  # each call's events carry the trace of its own request
