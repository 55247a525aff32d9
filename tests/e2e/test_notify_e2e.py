"""Notify as a process among the others: messages arrive once, in the partner's language, signed;
a notify killed between handing a message over and recording it resends it with the same
Message-ID / webhook-id; and no message carries what it must not (scanned, every one of them)."""

from __future__ import annotations

import json
import signal
import sqlite3
from pathlib import Path

import httpx
import pytest
from faststream.redis import RedisBroker

from shared.events import Envelope, stream_name
from shared.events.codes import PlaceKind
from shared.events.housing import PlaceFreed
from shared.events.intake import ConsentGiven
from shared.events.referrals import ReferralMade
from shared.testing.webhook_receiver import WebhookReceiver

from .helpers import PERSON, open_stay, post_request, staff_headers, wait_for

ROOT = Path(__file__).resolve().parents[2]
COORDINATOR = "coordination@refuge.example"


@pytest.fixture
def hooks():
    with WebhookReceiver() as receiver:
        yield receiver


async def publish(redis_url: str, namespace: str, *envelopes: Envelope | dict) -> None:
    """Publish as the producing service would (FastStream's own framing, on its stream)."""
    async with RedisBroker(redis_url) as broker:
        for envelope in envelopes:
            body = envelope if isinstance(envelope, dict) else envelope.model_dump(mode="json")
            await broker.publish(body, stream=stream_name(namespace, body["producer"]))


def register(notify_url: str, partner_ref: str, **body) -> dict:
    response = httpx.put(f"{notify_url}/api/partners/{partner_ref}", json=body, headers=staff_headers(), timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def deliveries(notify_url: str, **filters) -> list[dict]:
    return httpx.get(f"{notify_url}/api/deliveries", params=filters, headers=staff_headers(), timeout=10).json()


def shelter_addresses() -> list[str]:
    """Every address housing knows from its seed: none may appear in any message."""
    seed = ROOT / "services" / "housing" / "seed" / "places.json"
    flats = json.loads(seed.read_text())["flats"] if seed.exists() else []
    return [flat["address"] for flat in flats] + ["Rue du Canari 7"]


PERSONAL = [PERSON["name"], "Mokoena", "Zanele", PERSON["phone"], "470 99 88 77", PERSON["email"], PERSON["date_of_birth"],
            "uncle", "sleeping at a friend"]


def messages_of(sink, receiver) -> list[tuple[str, str]]:
    """(recipient, full raw text) of every mail and webhook body sent, headers included."""
    with sink.mailbox.lock:
        mails = [(m["To"], m.as_string()) for m in sink.mailbox.messages]
    calls = [(r.path, json.dumps(dict(r.headers)) + r.body.decode()) for r in receiver.requests()]
    return mails + calls


STAFF = {COORDINATOR, "logistics@refuge.example"}


def assert_nothing_leaks(sent: list[tuple[str, str]], *, allowed_person: dict[str, set[str]], people: set[str],
                         place_refs: set[str]) -> None:
    """No message carries personal data or a shelter address; a message to anyone but staff (a partner's
    address or webhook) names a person only when that partner may know them, and never a place."""
    assert sent, "the scan sees the messages"
    for recipient, text in sent:
        for secret in PERSONAL + shelter_addresses():
            assert secret not in text, f"{secret!r} in a message to {recipient}"
        if recipient in STAFF:
            continue
        for person in people - allowed_person.get(recipient, set()):
            assert person not in text, f"{person} sent to {recipient} without consent"
        for place in place_refs:
            assert place not in text, f"place {place} sent to a partner"


async def test_partners_and_staff_get_their_messages_once_in_their_language_and_nothing_leaks(
        stack_factory, smtp_sink, hooks, redis_url, namespace):
    stack = stack_factory(extra_env={"NOTIFY_REFERRALS_URL": hooks.url()}).start()
    notify = stack.url("notify")
    consenting = register(notify, "ORG-nl", email="onthaal@partner-nl.example", webhook_url=hooks.url("/org-nl"),
                          language="nl")
    hooks.endpoint("/org-nl", secret=consenting["webhook_secret"])
    register(notify, "ORG-en", email="desk@partner-en.example", language="en", subscriptions=["PlaceFreed"])

    # A request with personal data goes through intake and housing: the coordinator is told, by reference.
    person_ref = post_request(stack.url("intake"))["person_ref"]
    stay = wait_for(lambda: open_stay(stack.url("housing"), person_ref))
    assert stay, stack.logs()
    admission = smtp_sink.mailbox.wait_for(lambda m: person_ref in m["Subject"] and m["To"] == COORDINATOR)
    assert len(admission) == 1, stack.logs()
    assert f"/people/{person_ref}" in admission[0].get_body(("plain",)).get_content()

    # The person consents to share with ORG-nl; referrals refers them to ORG-nl and to ORG-en. The
    # second referral's payload carries fields no contract has (a careless producer): they must go nowhere.
    consent = Envelope.wrap(ConsentGiven(consent_ref="C-e2e", person_ref=person_ref, partner_ref="ORG-nl",
                                         purpose="referral"))
    await publish(redis_url, namespace, consent)
    assert wait_for(lambda: handled(stack, consent)), stack.logs()
    to_nl = Envelope.wrap(ReferralMade(referral_ref="RF-nl", person_ref=person_ref, partner_ref="ORG-nl",
                                       service_category="legal", shares_personal_data=True))
    to_en = Envelope.wrap(ReferralMade(referral_ref="RF-en", person_ref=person_ref, partner_ref="ORG-en",
                                       service_category="housing_search", shares_personal_data=True)).model_dump(mode="json")
    to_en["payload"].update(name=PERSON["name"], phone=PERSON["phone"], shelter_address="Rue du Canari 7")
    for ref in ("RF-nl", "RF-en"):
        hooks.serve_json(f"/api/referrals/{ref}/partner-link", {"url": f"https://refuge.example/r/{ref}-signed"})
    await publish(redis_url, namespace, to_nl, to_en, to_nl)  # RF-nl delivered twice
    await publish(redis_url, namespace, Envelope.wrap(PlaceFreed(place_ref=stay["place_ref"], place_kind=PlaceKind.emergency)))

    nl_mail = smtp_sink.mailbox.wait_for(lambda m: m["To"] == "onthaal@partner-nl.example")
    nl_hook = hooks.wait_for(lambda r: r.path == "/org-nl")
    en_mails = wait_for(lambda: mails_to(smtp_sink, "desk@partner-en.example", at_least=2))
    assert nl_mail and nl_hook and en_mails, stack.logs()
    assert wait_for(lambda: sent_count(notify, cause_event_id=to_nl.event_id) == 2)

    # once each, in the partner's language, signed, with the link, the person named only with consent
    assert len(nl_mail) == 1 and len(hooks.requests("/org-nl")) == 1
    assert nl_mail[0]["Subject"] == "Nieuwe doorverwijzing RF-nl (legal)"
    assert person_ref in nl_mail[0].get_body(("plain",)).get_content()
    assert nl_hook[0].verified and nl_hook[0].payload["data"]["person_ref"] == person_ref
    assert nl_hook[0].payload["data"]["referral_link"] == "https://refuge.example/r/RF-nl-signed"
    en_subjects = sorted(m["Subject"] for m in en_mails)
    assert en_subjects == ["A emergency place is free at the refuge", "New referral RF-en (housing_search)"]

    assert_nothing_leaks(messages_of(smtp_sink, hooks),
                         allowed_person={"onthaal@partner-nl.example": {person_ref}, "/org-nl": {person_ref}},
                         people={person_ref}, place_refs={stay["place_ref"]})


def handled(stack, envelope: Envelope) -> bool:
    """notify recorded the event in its inbox (its effects committed with it)."""
    with sqlite3.connect(stack.workdir / "notify.db") as db:
        return db.execute("SELECT 1 FROM inbox WHERE event_id = ?", (envelope.event_id,)).fetchone() is not None


def mails_to(sink, address: str, at_least: int = 1) -> list:
    with sink.mailbox.lock:
        found = [m for m in sink.mailbox.messages if m["To"] == address]
    return found if len(found) >= at_least else []


def sent_count(notify_url: str, **filters) -> int:
    return len([d for d in deliveries(notify_url, **filters) if d["status"] == "sent"])


async def test_a_notify_killed_between_sending_and_recording_resends_with_the_same_message_id_and_webhook_id(
        stack_factory, smtp_sink, hooks, redis_url, namespace):
    # Each process dies right after its first hand-over; a long lease keeps the second process off the
    # message the first one was sending, so each channel is interrupted once. The third process, with a
    # short lease, takes both over.
    faulty = {"REFUGE_FAULTS": "after_send=kill", "NOTIFY_SEND_LEASE_SECONDS": "60", "NOTIFY_SEND_CONCURRENCY": "1",
              "NOTIFY_REFERRALS_URL": hooks.url()}
    stack = stack_factory(extra_env=faulty)
    first = stack.add("notify", instance="-1", consumer="notify-1")
    first.start()
    first.wait_healthy()
    partner = register(first.url, "ORG-k", email="desk@org-k.example", webhook_url=hooks.url("/org-k"), language="en")
    hooks.endpoint("/org-k", secret=partner["webhook_secret"])
    hooks.serve_json("/api/referrals/RF-k/partner-link", {"url": "https://refuge.example/r/RF-k-signed"})
    await publish(redis_url, namespace, Envelope.wrap(ReferralMade(
        referral_ref="RF-k", person_ref="P-killed", partner_ref="ORG-k", service_category="legal")))

    assert first.process.wait(timeout=30) == -signal.SIGKILL, stack.logs()
    second = stack.add("notify", instance="-2", consumer="notify-2", port=first.port)
    second.start()
    assert second.process.wait(timeout=30) == -signal.SIGKILL, stack.logs()
    handed_over = len(smtp_sink.mailbox.messages) + len(hooks.requests("/org-k"))
    assert handed_over == 2, "each process handed one message over before it died"

    third = stack.add("notify", instance="-3", consumer="notify-3", port=first.port)
    third.env.pop("REFUGE_FAULTS")
    third.env["NOTIFY_SEND_LEASE_SECONDS"] = "1"
    third.start()
    third.wait_healthy()
    assert wait_for(lambda: sent_count(third.url, partner_ref="ORG-k") == 2), stack.logs()
    sent = deliveries(third.url, partner_ref="ORG-k")

    mails = [m for m in smtp_sink.mailbox.messages if m["To"] == "desk@org-k.example"]
    calls = hooks.requests("/org-k")
    assert len(mails) == 2 and len(calls) == 2, "one resend each, no more"
    by_channel = {d["channel"]: d for d in sent}
    assert {m["Message-ID"] for m in mails} == {f"<{by_channel['email']['notification_ref']}@refuge.notify>"}
    assert {c.webhook_id for c in calls} == {by_channel["webhook"]["notification_ref"]}
    assert all(c.verified and c.status == 200 for c in calls)
    for delivery in sent:
        detail = httpx.get(f"{third.url}/api/deliveries/{delivery['notification_ref']}", headers=staff_headers()).json()
        assert detail["attempts"] == 2
        assert [a["outcome"] for a in detail["attempt_log"]] == ["interrupted", "sent"]

    # NotificationDelivered once per message, though each was handed over twice
    with sqlite3.connect(stack.workdir / "notify.db") as db:
        rows = db.execute("SELECT body FROM outbox WHERE event_type = 'NotificationDelivered'").fetchall()
    assert sorted(json.loads(body)["payload"]["channel"] for (body,) in rows) == ["email", "webhook"]

    assert_nothing_leaks(messages_of(smtp_sink, hooks), allowed_person={}, people={"P-killed"}, place_refs=set())
