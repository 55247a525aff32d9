"""Housing's staff API in-process against a real Redis and store: the console's journeys, roles,
confidential addresses, refusals, and two consoles racing for the last place."""

import asyncio
import json
from datetime import date
from types import SimpleNamespace

import httpx
import pytest
from sqlmodel import col, select

from services.housing.app import create_app
from services.housing.settings import HousingSettings
from shared.auth import DEV_SECRET, Role, TokenSigner
from shared.events import Envelope, stream_name
from shared.events.codes import Decision, PlaceKind, Track, Urgency
from shared.events.intake import RequestAssessed
from shared.messaging import OutboxEntry
from tests.conftest import store_kinds
from tests.service.test_housing_clock import Clock, write_seed

ADDRESSES = ("Rue secrète 1", "Rue secrète 2")


def as_staff(*roles: Role, username: str = "staff-member") -> dict[str, str]:
    return {"Authorization": f"Bearer {TokenSigner(DEV_SECRET).issue(username, roles)}"}


HOUSING = as_staff(Role.housing, username="logistics")
COORDINATOR = as_staff(Role.social_coordinator, username="coordinator")
INTAKE_WORKER = as_staff(Role.intake_worker, username="intake")


async def start_housing(url: str, redis_url: str, namespace: str, seed, clock: Clock, consumer: str):
    settings = HousingSettings(redis_url=redis_url, database_url=url, namespace=namespace, consumer_name=consumer,
                               seed_file=str(seed), poll_interval_ms=50, clock_tick_seconds=3600)
    app = create_app(settings, today=clock)
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://housing", timeout=10)
    return SimpleNamespace(app=app, runtime=app.state.runtime, client=client, lifespan=lifespan)


async def stop_housing(housing) -> None:
    await housing.client.aclose()
    await housing.lifespan.__aexit__(None, None, None)


@pytest.fixture(params=store_kinds())
async def database(request, make_database):
    return make_database(request.param, "housing_api")


@pytest.fixture
async def housing(database, redis_url, namespace, tmp_path):
    clock = Clock(date(2026, 1, 31))
    seed = write_seed(tmp_path / "seed.json", {"emergency": 2, "cadal": 1})
    service = await start_housing(database, redis_url, namespace, seed, clock, "housing-api")
    service.clock = clock
    yield service
    await stop_housing(service)


async def decide(housing, person_ref: str, urgency: Urgency = Urgency.days, kind: PlaceKind = PlaceKind.emergency):
    envelope = Envelope.wrap(RequestAssessed(request_ref=f"R-{person_ref}", person_ref=person_ref,
                                             decision=Decision.accommodate,
                                             track=Track.cadal if kind is PlaceKind.cadal else Track.youth,
                                             place_kind=kind, urgency=urgency))
    await housing.runtime.broker.publish(envelope.model_dump(mode="json"),
                                         stream=stream_name(housing.runtime.settings.namespace, "intake"))


async def until(fetch, timeout: float = 15.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await fetch()
        if result or asyncio.get_running_loop().time() > deadline:
            return result
        await asyncio.sleep(0.05)


async def get(housing, path: str, headers=COORDINATOR, **params):
    response = await housing.client.get(path, headers=headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def post(housing, path: str, body=None, headers=COORDINATOR, expect: int = 200):
    response = await housing.client.post(path, json=body, headers=headers)
    assert response.status_code == expect, response.text
    return response.json()


async def outbox(housing) -> list[dict]:
    async with housing.runtime.sessions() as session:
        rows = (await session.exec(select(OutboxEntry).order_by(col(OutboxEntry.id)))).all()
    return [json.loads(r.body) for r in rows]


async def test_staff_run_stays_offers_and_the_waiting_list_through_the_api(housing):
    for person, urgency in [("P-1", Urgency.days), ("P-2", Urgency.days), ("P-weeks", Urgency.weeks),
                            ("P-days", Urgency.days), ("P-now", Urgency.immediate)]:
        await decide(housing, person, urgency)
    line = await until(lambda: _waiting(housing, 3))
    assert [(w["person_ref"], w["position"], w["urgency"]) for w in line] == [
        ("P-now", 1, "immediate"), ("P-days", 2, "days"), ("P-weeks", 3, "weeks")]
    (mine,) = await get(housing, "/api/waitlist", person_ref="P-weeks")
    assert (mine["position"], mine["place_kind"], mine["offer"]) == (3, "emergency", None)
    stays = {s["person_ref"]: s for s in await get(housing, "/api/stays")}
    assert set(stays) == {"P-1", "P-2"}
    assert stays["P-1"]["planned_end"] == "2026-04-30"  # 31 January + 3 months
    assert stays["P-1"]["days_left"] == 89

    # A discharge frees the place; it is reserved for the first in line, not given to anyone else.
    discharged = await post(housing, f"/api/stays/{stays['P-1']['stay_ref']}/discharge", {
        "destination": "own_housing", "planned": True, "safe": True, "follow_up": "visit in the new flat in May"})
    assert discharged["ended_on"] == "2026-01-31"
    assert discharged["exit"] == {"destination": "own_housing", "planned": True, "safe": True,
                                  "follow_up": "visit in the new flat in May", "discharged_by": "coordinator"}
    (offer,) = await get(housing, "/api/offers")
    assert (offer["person_ref"], offer["place_ref"]) == ("P-now", stays["P-1"]["place_ref"])
    board = await get(housing, "/api/board")
    place = next(p for f in board["flats"] for p in f["places"] if p["place_ref"] == offer["place_ref"])
    assert (place["state"], place["offer_ref"], place["person_ref"]) == ("reserved", offer["offer_ref"], "P-now")

    # Refused: that person leaves the list, the place goes to the next in line.
    refused = await post(housing, f"/api/offers/{offer['offer_ref']}/refuse", {"reason": "prefers to stay with a friend"})
    assert refused["outcome"] == "refused"
    (offer,) = await get(housing, "/api/offers")
    assert offer["person_ref"] == "P-days"
    assert [w["person_ref"] for w in await get(housing, "/api/waitlist")] == ["P-days", "P-weeks"]
    admitted = await post(housing, f"/api/offers/{offer['offer_ref']}/accept", expect=201)
    assert (admitted["person_ref"], admitted["place_ref"], admitted["planned_end"]) == (
        "P-days", offer["place_ref"], "2026-04-30")

    # Extension with reason and approver; a new end before the current one is refused, naming the field.
    stay_2 = stays["P-2"]["stay_ref"]
    late = await housing.client.post(f"/api/stays/{stay_2}/extend", headers=COORDINATOR,
                                     json={"new_end": "2026-04-01", "reason": "exams", "approver": "director"})
    assert late.status_code == 422
    assert late.json()["detail"][0]["field"] == "new_end"
    extended = await post(housing, f"/api/stays/{stay_2}/extend",
                          {"new_end": "2026-05-31", "reason": "exams in May", "approver": "director"})
    assert extended["planned_end"] == "2026-05-31"
    assert [(e["previous_end"], e["new_end"], e["reason"], e["approver"], e["recorded_by"])
            for e in extended["extensions"]] == [("2026-04-30", "2026-05-31", "exams in May", "director", "coordinator")]

    # A new place is offered at once to the next in line; when they leave the list it becomes vacant.
    await post(housing, "/api/places", {"flat_code": "F-A", "kind": "emergency", "place_ref": "PL-NEW"},
               headers=HOUSING, expect=201)
    (offer,) = await get(housing, "/api/offers")
    assert (offer["person_ref"], offer["place_ref"]) == ("P-weeks", "PL-NEW")
    left = await post(housing, f"/api/waitlist/{offer['entry_ref']}/leave")
    assert left["left_reason"] == "withdrawn"
    assert (await get(housing, "/api/places", state="vacant", kind="emergency"))[0]["place_ref"] == "PL-NEW"

    # Move within the same kind: the old place is freed; then it can be taken out of service and back.
    moved = await post(housing, f"/api/stays/{stay_2}/move", {"to_place_ref": "PL-NEW", "reason": "quieter room"})
    assert moved["place_ref"] == "PL-NEW" and moved["moves"][0]["from_place_ref"] == stays["P-2"]["place_ref"]
    old_place = stays["P-2"]["place_ref"]
    repaired = await post(housing, f"/api/places/{old_place}/out-of-service", {"reason": "water damage"}, headers=HOUSING)
    assert (repaired["state"], repaired["out_of_service_reason"]) == ("out_of_service", "water damage")
    refused = await housing.client.post("/api/places/PL-NEW/out-of-service", json={"reason": "x"}, headers=HOUSING)
    assert refused.status_code == 409 and "occupied" in refused.json()["detail"]
    full = await housing.client.post("/api/stays", json={"person_ref": "P-walk-in", "place_kind": "emergency"},
                                     headers=COORDINATOR)
    assert full.status_code == 409 and "waiting list" in full.json()["detail"]
    await post(housing, f"/api/places/{old_place}/back-in-service", headers=HOUSING)
    walk_in = await post(housing, "/api/stays", {"person_ref": "P-walk-in", "place_kind": "emergency"}, expect=201)
    assert (walk_in["place_ref"], walk_in["admitted_by"]) == (old_place, "coordinator")

    # Stays ending within 30 days, soonest first, as the calendar moves on.
    assert await get(housing, "/api/stays/ending") == []
    housing.clock.today = date(2026, 4, 20)
    ending = await get(housing, "/api/stays/ending", within_days=30)
    assert [(s["person_ref"], s["days_left"]) for s in ending] == [("P-days", 10), ("P-walk-in", 10)]
    assert [s["person_ref"] for s in await get(housing, "/api/stays/ending", within_days=45)] == [
        "P-days", "P-walk-in", "P-2"]

    board = await get(housing, "/api/board")
    emergency = next(t for t in board["totals"] if t["place_kind"] == "emergency")
    assert (emergency["total"], emergency["occupied"], emergency["vacant"], emergency["waiting"]) == (3, 3, 0, 0)

    events = await outbox(housing)
    assert [e["type"] for e in events] == [
        "PersonAdmitted", "PersonAdmitted", "PersonWaitlisted", "PersonWaitlisted", "PersonWaitlisted",
        "PersonDischarged", "PlaceFreed", "PlaceOffered",
        "PersonLeftWaitlist", "PlaceFreed", "PlaceOffered",
        "PersonAdmitted",
        "StayExtended",
        "PlaceFreed", "PlaceOffered",
        "PersonLeftWaitlist", "PlaceFreed",
        "PersonMoved", "PlaceFreed",
        "PlaceFreed",
        "PersonAdmitted",
    ]
    discharge = next(e for e in events if e["type"] == "PersonDischarged")
    assert discharge["payload"]["destination"] == "own_housing" and discharge["payload"]["follow_up_planned"] is True
    assert len({e["correlation_id"] for e in events if e["payload"].get("person_ref") == "P-1"}) == 1
    everything = json.dumps(events)
    for secret in (*ADDRESSES, "friend", "exams", "director", "water damage", "visit in the new flat"):
        assert secret not in everything, f"{secret!r} travelled in an event"


async def _waiting(housing, n):
    line = await get(housing, "/api/waitlist", place_kind="emergency")
    return line if len(line) == n else None


async def test_addresses_and_commands_follow_the_staff_roles(housing):
    for headers, shown in [(HOUSING, True), (as_staff(Role.administrator), True), (COORDINATOR, False),
                           (INTAKE_WORKER, False)]:
        board = await get(housing, "/api/board", headers=headers)
        flats = await get(housing, "/api/flats", headers=headers)
        addresses = {f["address"] for f in board["flats"]} | {f["address"] for f in flats}
        assert addresses == (set(ADDRESSES) if shown else {None})
        assert all(a not in json.dumps(board) for a in ADDRESSES) or shown

    assert (await housing.client.get("/api/board")).status_code == 401
    forbidden = await housing.client.post("/api/stays", json={"person_ref": "P-x", "place_kind": "emergency"},
                                          headers=INTAKE_WORKER)
    assert forbidden.status_code == 403
    not_inventory = await housing.client.post("/api/places", json={"flat_code": "F-A", "kind": "cadal"},
                                              headers=COORDINATOR)
    assert not_inventory.status_code == 403
    assert (await get(housing, "/api/board"))["totals"][0]["total"] == 2  # nothing was added

    unknown = await housing.client.post("/api/stays/S-nope/discharge", headers=COORDINATOR, json={
        "destination": "family", "planned": False, "safe": True, "follow_up": "none"})
    assert unknown.status_code == 404
    bad = await housing.client.post("/api/stays/S-nope/discharge", headers=COORDINATOR, json={
        "destination": "the moon", "planned": "maybe", "safe": True, "follow_up": "  "})
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["detail"]} == {"destination", "planned", "follow_up"}
    assert "the moon" not in bad.text
    named = await housing.client.post("/api/stays", headers=COORDINATOR,
                                      json={"person_ref": "Jane Doe", "place_kind": "emergency"})
    assert named.status_code == 422 and "Jane" not in named.text  # references are codes, never names


async def test_two_consoles_admitting_into_the_last_place_get_one_stay_and_one_refusal(
        database, housing, redis_url, namespace, tmp_path):
    other = await start_housing(database, redis_url, namespace, tmp_path / "seed.json", housing.clock, "housing-api-2")
    try:
        await post(housing, "/api/stays", {"person_ref": "P-first", "place_ref": "PL-001"}, expect=201)
        for _ in range(3):
            stays = await get(housing, "/api/stays")
            for stay in stays:
                await post(housing, f"/api/stays/{stay['stay_ref']}/discharge",
                           {"destination": "unknown", "planned": False, "safe": False, "follow_up": "none"})
            answers = await asyncio.gather(*[
                replica.client.post("/api/stays", headers=COORDINATOR,
                                    json={"person_ref": f"P-race-{i}", "place_kind": "emergency"})
                for i, replica in enumerate([housing, other, housing, other, housing, other])])
            codes = sorted(a.status_code for a in answers)
            assert codes == [201, 201, 409, 409, 409, 409], [a.text for a in answers]
            stays = await get(other, "/api/stays")
            assert len(stays) == 2 and len({s["place_ref"] for s in stays}) == 2
            # the same stay discharged from both consoles at once: one discharge, one refusal
            answers = await asyncio.gather(*[
                replica.client.post(f"/api/stays/{stays[0]['stay_ref']}/discharge", headers=COORDINATOR,
                                    json={"destination": "family", "planned": True, "safe": True, "follow_up": "none"})
                for replica in (housing, other)])
            assert sorted(a.status_code for a in answers) == [200, 409]
        kinds = [e["type"] for e in await outbox(housing)]
        assert kinds.count("PersonAdmitted") - kinds.count("PersonDischarged") == 1
    finally:
        await stop_housing(other)


def test_a_clock_offset_is_refused_outside_development():
    assert HousingSettings(clock_offset_days=10).clock_offset_days == 10
    with pytest.raises(ValueError, match="tests only"):
        HousingSettings(clock_offset_days=10, environment="production", auth_secret="a-real-secret")
    assert HousingSettings(stay_ending_days="3, 14,7").stay_ending_days == [14, 7, 3]
