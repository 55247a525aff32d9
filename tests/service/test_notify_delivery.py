"""Notify against a real Redis, a real store (SQLite, and PostgreSQL when given), a real SMTP server
and a real HTTP receiver that verifies Standard Webhooks signatures as a partner would."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
from sqlalchemy import text, update
from sqlmodel import col, select

from services.notify.app import create_app
from services.notify.settings import NotifySettings
from services.notify.store import Delivery, Rule
from shared.auth import DEV_SECRET, TokenSigner
from shared.events import Envelope, stream_name
from shared.events.codes import ExitDestination, PlaceKind
from shared.events.housing import PersonAdmitted, PersonDischarged, PersonWaitlisted, PlaceFreed, StayEnding
from shared.events.codes import Decision, Track
from shared.events.intake import ConsentGiven, ConsentWithdrawn, ErasureRequested, RequestAssessed
from shared.events.referrals import ReferralMade
from shared.messaging import InboxEntry, OutboxEntry
from shared.messaging.consumer import Entry
from shared.testing.smtp_sink import SmtpSink
from shared.testing.webhook_receiver import WebhookReceiver
from shared.store import make_engine
from tests.conftest import _create_database, _drop_database, _run, store_kinds
from tests.e2e.helpers import staff_headers

# What depends on the store (unique planning, claims and leases, consents, digests) runs on both
# SQLite and PostgreSQL; what only exercises HTTP or SMTP behaviour runs on SQLite.
on_every_store = pytest.mark.parametrize("store", store_kinds())
on_sqlite = pytest.mark.parametrize("store", ["sqlite"])

COORDINATOR = "coordination@refuge.example"
HOUSING = "logistics@refuge.example"


class Clock:
    """Real time, shifted: tests jump to the evening or the next morning."""

    def __init__(self):
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def set(self, moment: datetime) -> None:
        self.offset = moment - datetime.now(UTC)


@dataclass
class Harness:
    app: object
    runtime: object
    notify: object
    api: httpx.AsyncClient
    clock: Clock
    hooks: WebhookReceiver
    namespace: str

    async def publish(self, event, *, envelope: Envelope | None = None) -> Envelope:
        envelope = envelope or Envelope.wrap(event)
        await self.runtime.broker.publish(envelope.model_dump(mode="json"),
                                          stream=stream_name(self.namespace, envelope.producer))
        return envelope

    async def deliveries(self, **filters) -> list[dict]:
        response = await self.api.get("/api/deliveries", params=filters)
        assert response.status_code == 200, response.text
        return response.json()

    async def delivery(self, ref: str) -> dict:
        return (await self.api.get(f"/api/deliveries/{ref}")).json()

    async def register(self, partner_ref: str, **body) -> dict:
        response = await self.api.put(f"/api/partners/{partner_ref}", json=body)
        assert response.status_code == 200, response.text
        return response.json()

    async def outbox(self, event_type: str) -> list[OutboxEntry]:
        async with self.runtime.sessions() as session:
            return list((await session.exec(select(OutboxEntry).where(OutboxEntry.event_type == event_type)
                                            .order_by(col(OutboxEntry.id)))).all())

    async def rows(self, **where) -> list[Delivery]:
        async with self.runtime.sessions() as session:
            query = select(Delivery).order_by(col(Delivery.id))
            for key, value in where.items():
                query = query.where(getattr(Delivery, key) == value)
            return list((await session.exec(query)).all())


async def until(predicate, timeout: float = 15.0, every: float = 0.05):
    deadline = asyncio.get_running_loop().time() + timeout
    last = None
    while asyncio.get_running_loop().time() < deadline:
        last = predicate()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(every)
    return last


def mails_to(sink, address: str) -> list:
    with sink.mailbox.lock:
        return [m for m in sink.mailbox.messages if m["To"] == address]


async def _all_sent(deliveries, count: int) -> list | None:
    log = await deliveries
    return log if len(log) == count and all(d["status"] == "sent" for d in log) else None


async def _rows_sent(rows, count: int) -> list | None:
    found = await rows
    return found if len(found) == count and all(r.status == "sent" for r in found) else None


def failure_alerts(sink) -> list:
    return [m for m in mails_to(sink, COORDINATOR) if "n'a pas pu être remis" in m["Subject"]]


def text_of(message) -> str:
    return message.get_body(("plain",)).get_content()


def html_of(message) -> str:
    return message.get_body(("html",)).get_content()


def settings_for(database_url, redis_url, namespace, smtp_port, hooks, **overrides) -> NotifySettings:
    return NotifySettings(**{
        "redis_url": redis_url, "database_url": database_url, "namespace": namespace,
        "consumer_name": "notify-test", "poll_interval_ms": 50, "reclaim_idle_ms": 500, "smtp_port": smtp_port,
        "retry_base_seconds": 0.05, "sender_poll_seconds": 0.05, "send_lease_seconds": 120,
        "referrals_url": hooks.url(), "console_url": "https://console.refuge.example", **overrides,
    })


@pytest.fixture
def hooks():
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def postgres_for_notify(postgres_server_url):
    """One PostgreSQL database for this module's tests (creating one per test costs seconds);
    each test empties it when done."""
    if not postgres_server_url:
        yield None
        return
    name = f"refuge_notify_{uuid.uuid4().hex[:10]}"
    url = _run(_create_database(postgres_server_url, name))
    yield url
    _run(_drop_database(postgres_server_url, name))


async def _empty(url: str) -> None:
    engine = make_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await engine.dispose()


@pytest.fixture
async def notify_database(store, make_database, postgres_for_notify):
    if store == "sqlite":
        yield make_database("sqlite", "notify")
        return
    yield postgres_for_notify
    await _empty(postgres_for_notify)


@pytest.fixture
async def start_notify(notify_database, redis_url, namespace, smtp_sink, hooks):
    started: list[Harness] = []

    async def start(smtp_port: int | None = None, **overrides) -> Harness:
        clock = Clock()
        settings = settings_for(notify_database, redis_url, namespace, smtp_port or smtp_sink.port, hooks, **overrides)
        app = create_app(settings, clock=clock)
        runtime = app.state.runtime
        await runtime.start()
        api = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://notify", headers=staff_headers())
        harness = Harness(app, runtime, app.state.notify, api, clock, hooks, namespace)
        started.append(harness)
        return harness

    yield start
    for harness in started:
        await harness.api.aclose()
        await harness.runtime.stop()


@pytest.fixture
async def notify(start_notify) -> Harness:
    return await start_notify()


def referral(ref: str, partner: str, person: str = "P-7c1e", *, shares: bool = True, category: str = "legal") -> ReferralMade:
    return ReferralMade(referral_ref=ref, person_ref=person, partner_ref=partner, service_category=category,
                        shares_personal_data=shares)


def admitted(person: str) -> PersonAdmitted:
    return PersonAdmitted(stay_ref=f"S-{person}", person_ref=person, place_ref="PL-004", place_kind=PlaceKind.emergency,
                          starts_on=date(2026, 2, 2), planned_end=date(2026, 5, 2))


# --- arrives once, in the right language, with a valid signature ----------------------------------

@on_every_store
async def test_a_referral_reaches_its_partner_once_by_mail_and_by_signed_webhook_in_its_language(notify, smtp_sink, hooks):
    partner = await notify.register("ORG-nl", email="intake@partner-nl.example", webhook_url=hooks.url("/org-nl"),
                                    language="nl")
    assert partner["webhook_secret"].startswith("whsec_") and partner["has_webhook_secret"]
    hooks.endpoint("/org-nl", secret=partner["webhook_secret"])
    hooks.serve_json("/api/referrals/RF-1/partner-link", {"url": "https://refuge.example/r/signed-RF-1"})

    envelope = await notify.publish(referral("RF-1", "ORG-nl"))
    await notify.publish(None, envelope=envelope)  # the same event delivered twice

    received = await until(lambda: mails_to(smtp_sink, "intake@partner-nl.example") and hooks.requests("/org-nl"))
    assert received
    assert await until(lambda: notify.runtime.consumer.stats["duplicates"] >= 1)  # the second copy did arrive
    await asyncio.sleep(0.3)
    mails = mails_to(smtp_sink, "intake@partner-nl.example")
    calls = hooks.requests("/org-nl")
    assert len(mails) == 1 and len(calls) == 1

    mail = mails[0]
    assert mail["Subject"] == "Nieuwe doorverwijzing RF-1 (legal)"
    assert mail["Content-Language"] == "nl"
    assert "https://refuge.example/r/signed-RF-1" in text_of(mail)
    assert 'href="https://refuge.example/r/signed-RF-1"' in html_of(mail)
    call = calls[0]
    assert call.verified is True and call.status == 200
    body = call.payload
    assert body["type"] == "ReferralMade" and body["language"] == "nl"
    assert body["summary"] == mail["Subject"]
    assert body["data"] == {"referral_ref": "RF-1", "service_category": "legal",
                            "referral_link": "https://refuge.example/r/signed-RF-1"}
    # No consent recorded: the person's reference stays home.
    assert "P-7c1e" not in mail.as_string() and b"P-7c1e" not in call.body

    # The sink and the receiver count a message before they answer; notify records it after.
    log = await until(lambda: _all_sent(notify.deliveries(event_type="ReferralMade"), 2))
    assert sorted(d["channel"] for d in log) == ["email", "webhook"]
    assert all(d["status"] == "sent" and d["attempts"] == 1 for d in log)
    by_channel = {d["channel"]: d for d in log}
    assert mail["Message-ID"] == f"<{by_channel['email']['notification_ref']}@refuge.notify>"
    assert call.webhook_id == by_channel["webhook"]["notification_ref"]
    detail = await notify.delivery(by_channel["webhook"]["notification_ref"])
    assert [(a["outcome"], a["detail"]) for a in detail["attempt_log"]] == [("sent", "http 200")]

    # notify asked referrals for the link as itself, with a token referrals can verify
    link_call = hooks.requests("/api/referrals/RF-1/partner-link", method="GET")[0]
    token = link_call.headers["authorization"].removeprefix("Bearer ")
    assert TokenSigner(DEV_SECRET).verify(token).username == "service:notify"

    delivered = await notify.outbox("NotificationDelivered")
    assert len(delivered) == 2
    opened = [Envelope.model_validate_json(e.body).open() for e in delivered]
    assert {e.channel for e in opened} == {"email", "webhook"}
    assert all(e.partner_ref == "ORG-nl" and e.cause_event_id == envelope.event_id for e in opened)


@on_every_store
async def test_personal_references_go_to_a_partner_only_with_live_consent_and_leave_with_it(notify, smtp_sink, hooks):
    address = "desk@partner-en.example"
    await notify.register("ORG-en", email=address, language="en")
    await notify.register("ORG-other", email="desk@other.example", language="fr")
    for ref in ("RF-a", "RF-b", "RF-c", "RF-d"):
        hooks.serve_json(f"/api/referrals/{ref}/partner-link", {"url": f"https://refuge.example/r/{ref}"})

    async def referral_mail(ref: str, **kwargs):
        await notify.publish(referral(ref, "ORG-en", "P-consent", **kwargs))
        found = await until(lambda: [m for m in mails_to(smtp_sink, address) if ref in m["Subject"]])
        assert found, ref
        return found[0].as_string()

    # With an expiry, as the console records most consents.
    given = await notify.publish(ConsentGiven(consent_ref="C-1", person_ref="P-consent", partner_ref="ORG-en",
                                              purpose="referral", expires_on=date.today() + timedelta(days=90)))
    assert await until(lambda: _inbox_has(notify, given.event_id))
    assert "P-consent" in await referral_mail("RF-a")
    assert "P-consent" not in await referral_mail("RF-b", shares=False)  # referrals says this one shares nothing

    withdrawn = await notify.publish(ConsentWithdrawn(consent_ref="C-1", person_ref="P-consent", partner_ref="ORG-en",
                                                      purpose="referral"))
    notice = await until(lambda: [m for m in mails_to(smtp_sink, address) if "Consent withdrawn" in m["Subject"]])
    assert notice and "P-consent" in text_of(notice[0])  # it already had the reference: told to stop using it
    assert await _inbox_has(notify, withdrawn.event_id)
    assert "P-consent" not in await referral_mail("RF-c")

    await notify.publish(ErasureRequested(erasure_ref="E-1", person_ref="P-consent"))
    erasure = await until(lambda: [m for m in mails_to(smtp_sink, address) if "Erasure request" in m["Subject"]])
    assert erasure and "Art. 17(2)" in text_of(erasure[0])
    # Only partners that received the person's data are told; the other one never heard of them.
    await asyncio.sleep(0.3)
    assert mails_to(smtp_sink, "desk@other.example") == []
    shared = {d["notification_ref"] for d in await notify.deliveries(partner_ref="ORG-en") if d["personal_data_shared"]}
    assert len(shared) == 1  # RF-a only


async def _inbox_has(notify: Harness, event_id: str) -> bool:
    from shared.messaging import InboxEntry

    async with notify.runtime.sessions() as session:
        return (await session.exec(select(InboxEntry).where(InboxEntry.event_id == event_id))).first() is not None


# --- failures and retries --------------------------------------------------------------------------

@on_every_store
async def test_a_temporary_smtp_refusal_is_retried_and_the_mail_arrives_once(notify, smtp_sink):
    smtp_sink.mailbox.scripted_replies.extend(["451 4.3.0 try later", "421 4.7.0 busy"])
    await notify.publish(admitted("P-retry"))
    mails = await until(lambda: [m for m in mails_to(smtp_sink, COORDINATOR) if "P-retry" in m["Subject"]])
    assert mails
    await asyncio.sleep(0.3)
    assert len([m for m in mails_to(smtp_sink, COORDINATOR) if "P-retry" in m["Subject"]]) == 1
    assert mails[0]["Content-Language"] == "fr" and mails[0]["Subject"].startswith("Admission P-retry")
    [entry] = await notify.deliveries(event_type="PersonAdmitted")
    detail = await until(lambda: _sent(notify, entry["notification_ref"]))
    assert detail["attempts"] == 3
    assert [(a["outcome"], a["detail"]) for a in detail["attempt_log"]] == [
        ("temporary", "smtp 451"), ("temporary", "smtp 421"), ("sent", "smtp 250")]
    assert all(a["duration_ms"] is not None for a in detail["attempt_log"])
    assert detail["attempt_log"][0]["retry_at"] is not None


async def _sent(notify: Harness, ref: str):
    detail = await notify.delivery(ref)
    return detail if detail["status"] == "sent" else None


@on_every_store
async def test_a_permanent_refusal_fails_at_once_alerts_staff_and_can_be_retried_by_hand(notify, smtp_sink):
    smtp_sink.mailbox.scripted_replies.append("550 5.1.1 mailbox unavailable")
    await notify.publish(PersonWaitlisted(person_ref="P-refused", place_kind=PlaceKind.cadal, position=2))
    alert = await until(lambda: failure_alerts(smtp_sink))
    assert alert, "staff are told"
    [failed] = await notify.deliveries(event_type="PersonWaitlisted")
    assert failed["status"] == "failed" and failed["attempts"] == 1 and failed["reason_code"] == "smtp_550"
    assert failed["notification_ref"] in alert[0]["Subject"]
    assert f"https://console.refuge.example/notifications/{failed['notification_ref']}" in text_of(alert[0])
    assert "P-refused" not in alert[0].as_string()  # a staff alert carries a reference to the message, not the person
    [event] = [Envelope.model_validate_json(e.body).open() for e in await notify.outbox("NotificationFailed")]
    assert event.reason_code == "smtp_550" and event.attempts == 1
    assert [m for m in mails_to(smtp_sink, COORDINATOR) if "P-refused" in m["Subject"]] == []

    # no automatic retry of a permanent failure
    await asyncio.sleep(0.4)
    assert (await notify.delivery(failed["notification_ref"]))["attempts"] == 1

    ref = failed["notification_ref"]
    assert (await notify.api.post(f"/api/deliveries/{ref}/retry")).status_code == 202
    mail = await until(lambda: [m for m in mails_to(smtp_sink, COORDINATOR) if "P-refused" in m["Subject"]])
    assert mail and mail[0]["Message-ID"] == f"<{ref}@refuge.notify>"
    detail = await until(lambda: _sent(notify, ref))
    assert [a["outcome"] for a in detail["attempt_log"]] == ["permanent", "sent"]
    again = await notify.api.post(f"/api/deliveries/{ref}/retry")
    assert again.status_code == 409
    assert (await notify.api.post("/api/deliveries/N-unknown/retry")).status_code == 404


@on_sqlite
async def test_a_webhook_answering_500_then_429_is_retried_after_the_delay_asked_and_one_that_is_gone_is_not(
        notify, hooks, smtp_sink):
    partner = await notify.register("ORG-hook", webhook_url=hooks.url("/hook"), language="fr",
                                    subscriptions=["PlaceFreed"])
    hooks.endpoint("/hook", secret=partner["webhook_secret"])
    hooks.script("/hook", 500, (429, {"Retry-After": "1"}))
    gone = await notify.register("ORG-gone", webhook_url=hooks.url("/gone"), subscriptions=["PlaceFreed"])
    hooks.endpoint("/gone", secret=gone["webhook_secret"])
    hooks.script("/gone", 410)
    await notify.register("ORG-wrong-secret", webhook_url=hooks.url("/wrong"), subscriptions=["PlaceFreed"])
    hooks.endpoint("/wrong", secret="whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=")  # not the one notify signs with
    await notify.publish(PlaceFreed(place_ref="PL-009", place_kind=PlaceKind.post_shelter))

    calls = await until(lambda: [r for r in hooks.requests("/hook") if r.status == 200])
    assert calls
    await asyncio.sleep(0.3)
    calls = hooks.requests("/hook")
    assert [c.status for c in calls] == [500, 429, 200]
    assert all(c.verified for c in calls)
    assert len({c.webhook_id for c in calls}) == 1, "every attempt carries the same idempotency key"
    assert calls[2].at - calls[1].at >= 0.95, "Retry-After: 1 was honoured"
    body = calls[2].payload
    assert body["data"] == {"place_kind": "post_shelter"}  # no place reference for partners
    assert body["summary"] == "Une place post_shelter est libre au refuge"
    [entry] = await until(lambda: _all_sent(notify.deliveries(partner_ref="ORG-hook"), 1))
    detail = await notify.delivery(entry["notification_ref"])
    assert detail["status"] == "sent" and detail["attempts"] == 3
    assert [a["detail"] for a in detail["attempt_log"]] == ["http 500", "http 429", "http 200"]

    # 410 Gone, or 401 because the partner cannot verify the signature: permanent, no retry, staff told
    failed = await until(lambda: _all_failed(notify, 2))
    assert {d["partner_ref"]: d["reason_code"] for d in failed} == {"ORG-gone": "http_410", "ORG-wrong-secret": "http_401"}
    assert all(d["attempts"] == 1 for d in failed)
    assert len(hooks.requests("/gone")) == 1 and len(hooks.requests("/wrong")) == 1
    assert await until(lambda: len(failure_alerts(smtp_sink)) == 2)


async def _all_failed(notify: Harness, count: int):
    rows = [d for d in await notify.deliveries(channel="webhook") if d["status"] == "failed"]
    return rows if len(rows) == count else None


@on_sqlite
async def test_referrals_that_cannot_go_out_yet_are_retried_or_fail_visibly_until_staff_fix_them(notify, smtp_sink, hooks):
    # a partner nobody registered yet: failed at once, sent after registration and a retry
    hooks.serve_json("/api/referrals/RF-new/partner-link", {"url": "https://refuge.example/r/RF-new"})
    await notify.publish(referral("RF-new", "ORG-unknown", shares=False))
    failed = await until(lambda: _failed_for(notify, "ORG-unknown"))
    assert failed and failed["reason_code"] == "partner_not_registered"
    await notify.register("ORG-unknown", email="new@partner.example", language="en")
    assert (await notify.api.post(f"/api/deliveries/{failed['notification_ref']}/retry")).status_code == 202
    assert await until(lambda: mails_to(smtp_sink, "new@partner.example"))

    # referrals busy: retried until it gives the link; referrals does not know the referral: failed
    await notify.register("ORG-link", email="link@partner.example")
    hooks.serve_json("/api/referrals/RF-slow/partner-link", {"detail": "busy"}, status=503)
    await notify.publish(referral("RF-slow", "ORG-link", shares=False))
    first = await until(lambda: _attempted(notify, "ORG-link", 2))
    assert first and first["status"] in ("pending", "sending")
    hooks.serve_json("/api/referrals/RF-slow/partner-link", {"url": "https://refuge.example/r/RF-slow"})
    assert await until(lambda: mails_to(smtp_sink, "link@partner.example"))
    await notify.publish(referral("RF-missing", "ORG-link", shares=False))  # referrals answers 404
    failed = await until(lambda: _failed_for(notify, "ORG-link"))
    assert failed and failed["reason_code"] == "referral_link_unavailable" and failed["attempts"] == 1


async def _failed_for(notify: Harness, partner_ref: str):
    rows = [d for d in await notify.deliveries(partner_ref=partner_ref) if d["status"] == "failed"]
    return rows[0] if rows else None


async def _attempted(notify: Harness, partner_ref: str, attempts: int):
    rows = [d for d in await notify.deliveries(partner_ref=partner_ref) if d["attempts"] >= attempts]
    return rows[0] if rows else None


# --- quiet hours and digests ----------------------------------------------------------------------

@on_every_store
async def test_staff_alerts_wait_for_the_end_of_quiet_hours_and_stays_ending_come_in_one_morning_digest(
        start_notify, smtp_sink):
    from zoneinfo import ZoneInfo

    brussels = ZoneInfo("Europe/Brussels")
    notify = await start_notify(quiet_hours="21:00-07:00", digest_at="08:00")
    evening = datetime(2026, 3, 10, 22, 15, tzinfo=brussels)
    notify.clock.set(evening)

    await notify.publish(admitted("P-night"))
    stays = [StayEnding(stay_ref=f"S-{i}", person_ref=f"P-end{i}", planned_end=date(2026, 3, 13 + i), days_before=3 + i)
             for i in (2, 0, 1)]
    twice = await notify.publish(stays[0])
    await notify.publish(None, envelope=twice)
    for stay in stays[1:]:
        await notify.publish(stay)
    held = await until(lambda: _count(notify, 4))
    assert held
    await asyncio.sleep(0.3)
    assert mails_to(smtp_sink, COORDINATOR) == [] and mails_to(smtp_sink, HOUSING) == []
    [night] = await notify.deliveries(event_type="PersonAdmitted")
    assert datetime.fromisoformat(night["next_attempt_at"]) == datetime(2026, 3, 11, 7, 0, tzinfo=brussels)

    notify.clock.set(datetime(2026, 3, 11, 7, 5, tzinfo=brussels))
    assert await until(lambda: [m for m in mails_to(smtp_sink, COORDINATOR) if "P-night" in m["Subject"]])
    await asyncio.sleep(0.3)
    assert mails_to(smtp_sink, HOUSING) == []  # the digest waits for 08:00

    notify.clock.set(datetime(2026, 3, 11, 8, 0, 30, tzinfo=brussels))
    digests = await until(lambda: mails_to(smtp_sink, HOUSING))
    await asyncio.sleep(0.3)
    digests = mails_to(smtp_sink, HOUSING)
    assert len(digests) == 1
    body = text_of(digests[0])
    assert digests[0]["Subject"] == "Récapitulatif : 3 avis"
    positions = [body.index(f"S-{i}") for i in (0, 1, 2)]
    assert positions == sorted(positions), "ordered by end date"
    assert body.count("S-2 ") == 1, "the duplicated event is listed once"
    assert "https://console.refuge.example/case-files/P-end0" in body
    rows = await notify.deliveries(event_type="StayEnding")
    assert {d["status"] for d in rows} == {"digested"} and len({d["digest_ref"] for d in rows}) == 1


async def _count(notify: Harness, n: int):
    rows = await notify.deliveries()
    return rows if len(rows) == n else None


# --- rules are data ---------------------------------------------------------------------------------

@on_sqlite
async def test_a_rule_staff_add_or_disable_takes_effect_without_a_restart(notify, smtp_sink):
    def discharge(person: str) -> PersonDischarged:
        return PersonDischarged(stay_ref=f"S-{person}", person_ref=person, place_ref="PL-002",
                                destination=ExitDestination.own_housing, planned=True, safe=True)

    created = await notify.api.post("/api/rules", json={
        "name": "exit-to-housing", "event_type": "PersonDischarged", "audience": "housing_staff",
        "template": "person_discharged", "language": "nl"})
    assert created.status_code == 201, created.text
    await notify.publish(discharge("P-exit1"))
    to_housing = await until(lambda: [m for m in mails_to(smtp_sink, HOUSING) if "P-exit1" in m["Subject"]])
    assert to_housing and to_housing[0]["Subject"].startswith("Vertrek P-exit1")
    assert await until(lambda: [m for m in mails_to(smtp_sink, COORDINATOR) if "P-exit1" in m["Subject"]])

    rules = (await notify.api.get("/api/rules", params={"event_type": "PersonDischarged"})).json()
    default = next(r for r in rules if r["name"] == "exit-to-coordinator")
    off = await notify.api.put(f"/api/rules/{default['id']}", json={**default, "enabled": False})
    assert off.status_code == 200 and off.json()["updated_by"] == "test-coordinator"
    await notify.publish(discharge("P-exit2"))
    assert await until(lambda: [m for m in mails_to(smtp_sink, HOUSING) if "P-exit2" in m["Subject"]])
    await asyncio.sleep(0.3)
    assert [m for m in mails_to(smtp_sink, COORDINATOR) if "P-exit2" in m["Subject"]] == []


@on_sqlite
async def test_an_event_no_rule_concerns_is_acknowledged_without_a_transaction_and_a_rule_changed_elsewhere_follows(
        start_notify, smtp_sink, redis_url):
    """Rules are read from memory to skip events that concern no one; a change made through another
    replica (here: straight in the store) is followed within `rules_refresh_seconds`."""
    notify = await start_notify(rules_refresh_seconds=0.1)

    async def set_admissions_rule(enabled: bool) -> None:
        async with notify.runtime.sessions() as session:
            await session.exec(update(Rule).where(col(Rule.name) == "admission-to-coordinator").values(enabled=enabled))
            await session.commit()
        await asyncio.sleep(0.4)

    async def inbox_has(envelope: Envelope) -> bool:
        async with notify.runtime.sessions() as session:
            return (await session.exec(select(InboxEntry).where(InboxEntry.event_id == envelope.event_id))).first() is not None

    def admissions(person: str) -> list:
        return [m for m in mails_to(smtp_sink, COORDINATOR) if person in m["Subject"]]

    async def nothing_pending() -> bool:
        client = await notify.runtime.broker.connect()
        groups = await client.xinfo_groups(stream_name(notify.namespace, "housing"))
        return all(g["pending"] == 0 and g["lag"] == 0 for g in groups)

    adult = RequestAssessed(request_ref="R-adult", person_ref="P-adult", decision=Decision.accommodate,
                            track=Track.youth, place_kind=PlaceKind.emergency)
    minor = RequestAssessed(request_ref="R-minor", person_ref="P-minor", decision=Decision.refer, track=Track.minor)
    assert not notify.notify.concerns(Envelope.wrap(adult), adult)  # the minors' rule does not match
    assert notify.notify.concerns(Envelope.wrap(minor), minor)

    await set_admissions_rule(False)
    quiet = await notify.publish(admitted("P-quiet"))
    assert await until(nothing_pending)
    assert not await inbox_has(quiet) and await notify.rows(person_ref="P-quiet") == []

    await set_admissions_rule(True)
    loud = await notify.publish(admitted("P-loud"))
    assert await until(lambda: admissions("P-loud"))
    assert await inbox_has(loud) and admissions("P-quiet") == []


# --- replicas -----------------------------------------------------------------------------------------

@on_every_store
async def test_two_replicas_share_the_work_and_each_message_goes_out_once(start_notify, smtp_sink):
    first = await start_notify(consumer_name="notify-a")
    await start_notify(consumer_name="notify-b")
    people = [f"P-replica{i}" for i in range(12)]
    for person in people:
        await first.publish(admitted(person))

    def admissions() -> list[str]:
        return [m["Subject"] for m in mails_to(smtp_sink, COORDINATOR) if "P-replica" in m["Subject"]]

    assert await until(lambda: len(admissions()) >= len(people))
    await asyncio.sleep(0.5)
    assert sorted(admissions()) == sorted(f"Admission {p} : place emergency" for p in people)
    rows = await until(lambda: _rows_sent(first.rows(cause_event_type="PersonAdmitted"), len(people)))
    assert rows and all(r.attempts == 1 for r in rows)


@on_every_store
async def test_events_read_in_one_batch_plan_what_they_would_plan_one_by_one(notify):
    """One batch: two admissions of the same person, an event delivered twice, and the person's
    erasure after them: the rules are read once, and the erasure still finds the batch's deliveries."""
    first, again, other = admitted("P-batch-a"), admitted("P-batch-a"), admitted("P-batch-b")
    envelopes = [Envelope.wrap(e) for e in (first, again, other)]
    erased = Envelope.wrap(ErasureRequested(erasure_ref="E-batch", person_ref="P-batch-a"))
    later = Envelope.wrap(admitted("P-batch-c"))
    batch = [*envelopes, envelopes[0], erased, later]
    async with notify.runtime.sessions() as session:  # no Art. 17(2) notice: the erasure plans nothing itself
        await session.exec(update(Rule).where(col(Rule.event_type) == "ErasureRequested").values(enabled=False))
        await session.commit()
    await notify.runtime.consumer.apply([Entry(stream_name(notify.namespace, e.producer), f"1-{n}".encode(), None, e,
                                               e.open()) for n, e in enumerate(batch)])

    admissions = await notify.rows(cause_event_type="PersonAdmitted")
    assert sorted(d.cause_event_id for d in admissions) == sorted(e.event_id for e in (*envelopes, later))
    tombstoned = [d for d in admissions if d.cause_event_id in (envelopes[0].event_id, envelopes[1].event_id)]
    assert {d.person_ref for d in tombstoned} == {"ERASED-E-batch"}
    assert {d.context["person_ref"] for d in tombstoned} == {"ERASED-E-batch"}
    assert {d.person_ref for d in admissions} - {"ERASED-E-batch"} == {"P-batch-b", "P-batch-c"}
    (confirmed,) = await notify.outbox("ErasureConfirmed")
    assert json.loads(confirmed.body)["payload"]["records_erased"] == 2


@on_sqlite
async def test_mails_share_smtp_connections_and_a_relay_that_restarted_still_gets_the_next_one(notify, smtp_sink):
    for n in range(8):
        await notify.publish(admitted(f"P-conn-{n}"))
    assert await until(lambda: len(mails_to(smtp_sink, COORDINATOR)) >= 8)
    peers = {t["peer"] for t in smtp_sink.mailbox.transports}
    assert len(peers) <= notify.notify.settings.send_concurrency < 8

    smtp_sink.stop()  # the relay restarts: every kept connection is gone
    restarted = SmtpSink(smtp_sink.port)
    smtp_sink.controller, smtp_sink.mailbox = restarted.controller, restarted.mailbox
    smtp_sink.start()
    await notify.publish(admitted("P-conn-after"))
    assert await until(lambda: [m for m in mails_to(smtp_sink, COORDINATOR) if "P-conn-after" in m["Subject"]])
