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


CIRE = "78e54713-3ab3-5ee1-90a4-eca97a75e9cd"  # partner_refs of referrals' seeded directory
JRS = "c160f871-e3cc-59a7-a06a-e1b2a605c3af"


async def test_a_referral_reaches_its_partner_once_in_its_language_signed_with_a_working_link_and_nothing_leaks(
        stack_factory, smtp_sink, hooks, redis_url, namespace):
    stack = stack_factory().start()  # notify fetches partner links from this stack's referrals
    notify, referrals_url = stack.url("notify"), stack.url("referrals")
    # Partners are registered in notify by referrals' partner_ref, with addresses of the test's own.
    consenting = register(notify, CIRE, email="onthaal@cire.example", webhook_url=hooks.url("/cire"), language="nl")
    hooks.endpoint("/cire", secret=consenting["webhook_secret"])
    register(notify, JRS, email="desk@jrs.example", language="en", subscriptions=["PlaceFreed"])

    # A request with personal data goes through intake and housing: the coordinator is told, by reference.
    person_ref = post_request(stack.url("intake"))["person_ref"]
    stay = wait_for(lambda: open_stay(stack.url("housing"), person_ref))
    assert stay, stack.logs()
    admission = smtp_sink.mailbox.wait_for(lambda m: person_ref in m["Subject"] and m["To"] == COORDINATOR, timeout=40)
    assert len(admission) == 1, stack.logs()
    assert f"/case-files/{person_ref}" in admission[0].get_body(("plain",)).get_content()

    # The person agrees to share with CIRE (as intake records it); staff refer them to CIRE, sharing,
    # and to JRS, anonymously.
    consent = Envelope.wrap(ConsentGiven(consent_ref="C-e2e", person_ref=person_ref, partner_ref=CIRE, purpose="referral"))
    await publish(redis_url, namespace, consent)
    assert wait_for(lambda: handled(stack, consent)), stack.logs()
    assert wait_for(lambda: referrals_knows_consent(referrals_url, person_ref)), stack.logs()
    to_cire = make_referral(referrals_url, person_ref, CIRE, "legal_aid", share=True)
    make_referral(referrals_url, person_ref, JRS, "housing_search", share=False)

    # A careless producer puts fields no contract has on an event: they must reach no one.
    freed = Envelope.wrap(PlaceFreed(place_ref=stay["place_ref"], place_kind=PlaceKind.emergency)).model_dump(mode="json")
    freed["payload"].update(name=PERSON["name"], phone=PERSON["phone"], shelter_address="Rue du Canari 7")
    await publish(redis_url, namespace, freed)

    cire_mail = smtp_sink.mailbox.wait_for(lambda m: m["To"] == "onthaal@cire.example", timeout=40)
    cire_hook = hooks.wait_for(lambda r: r.path == "/cire", timeout=40)
    jrs_mails = wait_for(lambda: mails_to(smtp_sink, "desk@jrs.example", at_least=2))
    assert cire_mail and cire_hook and jrs_mails, stack.logs()
    assert wait_for(lambda: sent_count(notify, partner_ref=CIRE) == 2), stack.logs()

    # once each, in the partner's language, signed, the person named only where consent allows
    assert len(cire_mail) == 1 and len(hooks.requests("/cire")) == 1
    assert cire_mail[0]["Subject"] == f"Nieuwe doorverwijzing {to_cire} (legal_aid)"
    text = cire_mail[0].get_body(("plain",)).get_content()
    assert person_ref in text
    assert cire_hook[0].verified and cire_hook[0].payload["data"]["person_ref"] == person_ref
    assert sorted(m["Subject"] for m in jrs_mails)[0] == "A emergency place is free at the refuge"
    assert any(m["Subject"].startswith("New referral") for m in jrs_mails)

    # the link in the mail is referrals' signed link: it opens the partner's page of this referral
    link = cire_hook[0].payload["data"]["referral_link"]
    assert link in text and link.startswith(referrals_url)
    page = httpx.get(link, timeout=10)
    assert page.status_code == 200 and to_cire in page.text

    assert_nothing_leaks(messages_of(smtp_sink, hooks),
                         allowed_person={"onthaal@cire.example": {person_ref}, "/cire": {person_ref}},
                         people={person_ref}, place_refs={stay["place_ref"]})


def referrals_knows_consent(referrals_url: str, person_ref: str) -> bool:
    response = httpx.get(f"{referrals_url}/api/people/{person_ref}", headers=staff_headers(), timeout=5)
    return response.status_code == 200 and bool(response.json().get("consents"))


def make_referral(referrals_url: str, person_ref: str, partner_ref: str, category: str, *, share: bool) -> str:
    response = httpx.post(f"{referrals_url}/api/referrals", headers=staff_headers(), timeout=10, json={
        "person_ref": person_ref, "partner_ref": partner_ref, "category": category, "share_personal_data": share})
    assert response.status_code == 201, response.text
    return response.json()["referral_ref"]


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
