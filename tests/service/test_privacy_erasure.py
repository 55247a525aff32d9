"""Erasure (GDPR Art. 17) in housing, referrals and notify, in-process against a real Redis and
store: one unit of work per service, ErasureConfirmed once, nothing left that names the person,
counters unchanged, a second delivery changing nothing, an unknown person confirmed with 0."""

import json
from datetime import date

import pytest
from sqlmodel import col, select

from services.housing.store import TABLES as HOUSING_TABLES
from services.notify.store import TABLES as NOTIFY_TABLES
from services.referrals.store import TABLES as REFERRALS_TABLES
from shared.auth import Role
from shared.events import Envelope, stream_name
from shared.events.intake import ConsentGiven, ErasureRequested
from shared.messaging import InboxEntry, OutboxEntry
from tests.conftest import store_kinds
from tests.service.test_housing_api import ADDRESSES, as_staff, decide, start_housing, stop_housing
from tests.service.test_housing_clock import Clock as HousingClock
from tests.service.test_housing_clock import write_seed
from tests.service.test_notify_delivery import (  # noqa: F401  (fixtures)
    hooks,
    mails_to,
    notify,
    notify_database,
    postgres_for_notify,
    referral,
    start_notify,
    text_of,
    until,
)
from tests.service.test_referrals_service import STAFF, emitted, partner_ref, refer, referrals, wait_until  # noqa: F401

HOUSING = as_staff(Role.housing, username="logistics")
SECRET_TEXT = "Nightmares since the crossing"  # free text staff typed about the person


@pytest.fixture(params=store_kinds())
def store(request):
    return request.param


async def rows_mentioning(sessions, tables, *needles: str) -> list[str]:
    """Every row of the service's own tables that still contains one of `needles` anywhere."""
    found = []
    async with sessions() as session:
        for table in tables:
            for row in (await (await session.connection()).execute(table.select())).all():
                text = json.dumps([str(v) for v in row], ensure_ascii=False)
                found += [f"{table.name}: {text}" for needle in needles if needle in text]
    return found


async def confirmations(sessions) -> list[dict]:
    async with sessions() as session:
        rows = (await session.exec(select(OutboxEntry).where(OutboxEntry.event_type == "ErasureConfirmed")
                                   .order_by(col(OutboxEntry.id)))).all()
    return [json.loads(r.body)["payload"] for r in rows]


async def inbox_has(sessions, event_id: str) -> bool:
    async with sessions() as session:
        return (await session.exec(select(InboxEntry).where(InboxEntry.event_id == event_id))).first() is not None


async def publish_on(runtime, envelope: Envelope) -> None:
    await runtime.broker.publish(envelope.model_dump(mode="json"),
                                 stream=stream_name(runtime.settings.namespace, "intake"))


async def test_housing_erases_a_person_keeps_the_place_occupied_and_confirms_once(store, make_database, redis_url,
                                                                                    namespace, tmp_path):
    seed = write_seed(tmp_path / "seed.json", {"emergency": 2, "cadal": 0})
    housing = await start_housing(make_database(store, "housing_erasure"), redis_url, namespace, seed,
                                  HousingClock(date(2026, 1, 31)), "housing-erasure")
    api, runtime = housing.client, housing.runtime
    try:
        await decide(housing, "P-gone")
        await decide(housing, "P-kept")
        stays = await until(lambda: _open_stays(api, 2))
        gone = next(s for s in stays if s["person_ref"] == "P-gone")
        extended = await api.post(f"/api/stays/{gone['stay_ref']}/extend", headers=HOUSING, json={
            "new_end": "2026-06-30", "reason": SECRET_TEXT, "approver": "Dr. Approver"})
        assert extended.status_code == 200, extended.text
        waiting = await api.post("/api/waitlist", headers=HOUSING, json={"person_ref": "P-gone", "place_kind": "cadal"})
        assert waiting.status_code == 201, waiting.text
        board_before = (await api.get("/api/board", headers=HOUSING)).json()["totals"]

        erasure = Envelope.wrap(ErasureRequested(erasure_ref="E-h1", person_ref="P-gone"))
        await publish_on(runtime, erasure)
        await publish_on(runtime, erasure)  # delivered twice: the inbox lets it through once
        unknown = Envelope.wrap(ErasureRequested(erasure_ref="E-h2", person_ref="P-never-seen"))
        await publish_on(runtime, unknown)
        confirmed = await until(lambda: _confirmed(runtime.sessions, 2))
        assert [(c["erasure_ref"], c["person_ref"], c["service"]) for c in confirmed] == [
            ("E-h1", "P-gone", "housing"), ("E-h2", "P-never-seen", "housing")]
        assert confirmed[0]["records_erased"] == 3  # the stay, its extension, the waiting entry
        assert confirmed[1]["records_erased"] == 0

        assert (await api.get("/api/stays", params={"person_ref": "P-gone", "open_only": False}, headers=HOUSING)).json() == []
        assert (await api.get("/api/waitlist", params={"person_ref": "P-gone"}, headers=HOUSING)).json() == []
        detail = (await api.get(f"/api/stays/{gone['stay_ref']}", headers=HOUSING)).json()
        assert detail["person_ref"] == "ERASED-E-h1" and detail["ended_on"] is None  # the bed is still taken
        assert SECRET_TEXT not in json.dumps(detail) and "Dr. Approver" not in json.dumps(detail)
        board_after = (await api.get("/api/board", headers=HOUSING)).json()
        # Occupancy unchanged; only the erased person's place in the cadal line is gone.
        assert [{**k, "waiting": None} for k in board_after["totals"]] == [{**k, "waiting": None} for k in board_before]
        assert "P-gone" not in json.dumps(board_after)
        assert await rows_mentioning(runtime.sessions, HOUSING_TABLES, "P-gone", SECRET_TEXT, "Dr. Approver") == []
        assert await rows_mentioning(runtime.sessions, HOUSING_TABLES, "P-kept")  # the other person untouched
        assert set(ADDRESSES) <= {f["address"] for f in (await api.get("/api/flats", headers=HOUSING)).json()}
    finally:
        await stop_housing(housing)


async def _open_stays(api, count: int):
    stays = (await api.get("/api/stays", headers=HOUSING)).json()
    return stays if len(stays) == count else None


async def _confirmed(sessions, count: int):
    found = await confirmations(sessions)
    return found if len(found) >= count else None


async def test_referrals_erases_needs_consents_and_overrides_and_keeps_referral_counts(referrals):
    runtime = referrals.app.state.runtime
    person = "P-e1a5ed000001"
    caritas = await partner_ref(referrals, "Caritas International")
    envelope = Envelope.wrap(ConsentGiven(consent_ref="C-er", person_ref=person, partner_ref=caritas,
                                          purpose="family_reunification", expires_on=date(2027, 1, 1)))
    await publish_on(runtime, envelope)
    assert await wait_until(lambda: inbox_has(runtime.sessions, envelope.event_id))
    shared = await refer(referrals, "Caritas International", "family_reunification", person_ref=person,
                         share_personal_data=True)
    override = await refer(referrals, "Samusocial", "shelter", person_ref=person, share_personal_data=True,
                           override_reason=SECRET_TEXT)
    await refer(referrals, "Samusocial", "shelter", person_ref="P-other0000001")
    revoked = await referrals.post(f"/api/referrals/{override['referral_ref']}/revoke", headers=STAFF, json={})
    assert revoked.status_code == 200, revoked.text
    before = await _by_status(referrals)

    erasure = Envelope.wrap(ErasureRequested(erasure_ref="E-r1", person_ref=person))
    await publish_on(runtime, erasure)
    await publish_on(runtime, erasure)
    await publish_on(runtime, Envelope.wrap(ErasureRequested(erasure_ref="E-r2", person_ref="P-nobody")))
    confirmed = await wait_until(lambda: _confirmed(runtime.sessions, 2))
    assert [(c["erasure_ref"], c["service"]) for c in confirmed] == [("E-r1", "referrals"), ("E-r2", "referrals")]
    # the consent and the two referrals (no assessment seen here: neither followed nor needs)
    assert confirmed[0]["records_erased"] == 3 and confirmed[1]["records_erased"] == 0

    person_view = (await referrals.get(f"/api/people/{person}", headers=STAFF)).json()
    assert person_view["referrals"] == [] and person_view["consents"] == [] and person_view["followed"] is False
    assert (await referrals.get("/api/referrals", params={"person_ref": person}, headers=STAFF)).json() == []
    kept = (await referrals.get(f"/api/referrals/{shared['referral_ref']}", headers=STAFF)).json()
    assert kept["person_ref"] == "ERASED-E-r1" and kept["shares_personal_data"] is False
    assert kept["override_reason"] is None and kept["status"] == shared["status"]
    assert await _by_status(referrals) == before
    assert await rows_mentioning(runtime.sessions, REFERRALS_TABLES, person, SECRET_TEXT, "C-er") == []
    assert len(await emitted(referrals, "ErasureConfirmed")) == 2


async def _by_status(client) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in (await client.get("/api/referrals", headers=STAFF)).json():
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    return counts


async def test_notify_tells_informed_partners_then_forgets_the_person(notify, smtp_sink, hooks):
    address = "desk@partner-er.example"
    await notify.register("ORG-er", email=address, language="en")
    hooks.serve_json("/api/referrals/RF-er/partner-link", {"url": "https://refuge.example/r/RF-er"})
    person = "P-notify-er"
    given = await notify.publish(ConsentGiven(consent_ref="C-n", person_ref=person, partner_ref="ORG-er",
                                              purpose="referral"))
    assert await until(lambda: inbox_has(notify.runtime.sessions, given.event_id))
    await notify.publish(referral("RF-er", "ORG-er", person))
    assert await until(lambda: [m for m in mails_to(smtp_sink, address) if "RF-er" in m["Subject"]])
    assert await until(lambda: _shared(notify))
    count_before = len(await notify.deliveries())

    erasure = await notify.publish(ErasureRequested(erasure_ref="E-n1", person_ref=person))
    await notify.publish(None, envelope=erasure)
    await notify.publish(ErasureRequested(erasure_ref="E-n2", person_ref="P-nobody"))
    notice = await until(lambda: [m for m in mails_to(smtp_sink, address) if "Erasure request" in m["Subject"]])
    assert len(notice) == 1 and person in text_of(notice[0])  # the partner must learn whom to erase
    confirmed = await until(lambda: _confirmed(notify.runtime.sessions, 2))
    assert [(c["erasure_ref"], c["service"]) for c in confirmed] == [("E-n1", "notify"), ("E-n2", "notify")]
    assert confirmed[0]["records_erased"] >= 2 and confirmed[1]["records_erased"] == 0  # consent + log lines
    assert await until(lambda: _notice_sent(notify))
    assert await notify.deliveries(person_ref=person) == []
    assert len(await notify.deliveries()) == count_before + 1  # the log keeps its lines, plus the notice
    assert await rows_mentioning(notify.runtime.sessions, NOTIFY_TABLES, person) == []


async def _shared(notify) -> bool:
    return any(d["personal_data_shared"] for d in await notify.deliveries(partner_ref="ORG-er"))


async def _notice_sent(notify) -> bool:
    return any(d["status"] == "sent" for d in await notify.deliveries(event_type="ErasureRequested"))


def test_a_tombstone_is_per_erasure_and_fits_a_reference_column():
    from services.housing.domain import tombstone as housing_tombstone
    from services.notify.domain import tombstone as notify_tombstone
    from services.referrals.domain import tombstone as referrals_tombstone

    for tombstone in (housing_tombstone, referrals_tombstone, notify_tombstone):
        assert tombstone("E-1") == "ERASED-E-1" != tombstone("E-2")
        long = tombstone("E-" + "f" * 60)
        assert long.startswith("ERASED-") and len(long) <= 32 and long != tombstone("E-" + "e" * 60)
