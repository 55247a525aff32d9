"""Erasure (GDPR Art. 17) through the real processes: a person comes in through intake, housing
admits them, referrals sends them with consent to a partner; then ErasureRequested arrives on
intake's stream. Housing, referrals and notify each confirm on their own stream, none of their APIs
returns anything for the person any more, occupancy and referral counts are unchanged, and the
partner that received the person's data is told to erase it (Art. 17(2))."""

from __future__ import annotations

import json
from collections import Counter

import httpx
import redis

from shared.events import Envelope, new_ref, stream_name
from shared.events.intake import ConsentGiven, ErasureRequested

from .helpers import open_stay, post_request, staff_headers, wait_for
from .test_notify_e2e import CIRE, deliveries, make_referral, publish, referrals_knows_consent, register, sent_count

PARTNER_DESK = "desk@cire-erasure.example"


def get(url: str, **params):
    response = httpx.get(url, params=params, headers=staff_headers(), timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def confirmations(redis_url: str, namespace: str, erasure_ref: str) -> dict[str, dict]:
    """ErasureConfirmed of this erasure, per service, read from each service's own stream."""
    found = {}
    client = redis.Redis.from_url(redis_url)
    try:
        for service in ("housing", "referrals", "notify"):
            for _id, fields in client.xrange(stream_name(namespace, service)):
                for value in fields.values():
                    if b"ErasureConfirmed" in value and erasure_ref.encode() in value:
                        body = json.loads(value[value.index(b"{"):])
                        found[service] = body["payload"]
    finally:
        client.close()
    return found


def by_status(referrals_url: str) -> Counter:
    return Counter(r["status"] for r in get(f"{referrals_url}/api/referrals"))


def occupancy(housing_url: str) -> list[tuple]:
    return [(k["place_kind"], k["occupied"], k["vacant"], k["reserved"]) for k in get(f"{housing_url}/api/board")["totals"]]


async def test_an_erasure_reaches_every_service_keeps_the_counts_and_tells_the_partner(
        stack_factory, smtp_sink, redis_url, namespace):
    stack = stack_factory().start()
    intake, housing, referrals, notify = (stack.url(s) for s in ("intake", "housing", "referrals", "notify"))
    register(notify, CIRE, email=PARTNER_DESK, language="en")

    person_ref = post_request(intake)["person_ref"]
    stay = wait_for(lambda: open_stay(housing, person_ref))
    assert stay, stack.logs()
    consent = Envelope.wrap(ConsentGiven(consent_ref="C-erase", person_ref=person_ref, partner_ref=CIRE,
                                         purpose="referral"))
    await publish(redis_url, namespace, consent)
    assert wait_for(lambda: referrals_knows_consent(referrals, person_ref)), stack.logs()
    referral_ref = make_referral(referrals, person_ref, CIRE, "legal_aid", share=True)
    assert wait_for(lambda: sent_count(notify, partner_ref=CIRE) >= 1), stack.logs()
    assert any(d["personal_data_shared"] for d in deliveries(notify, partner_ref=CIRE))
    occupied_before, statuses_before = occupancy(housing), by_status(referrals)
    stays_before = len(get(f"{housing}/api/stays", open_only=False))

    # Art. 15: the person's copy, downloaded from intake, gathers what every service holds.
    copy = httpx.get(f"{intake}/api/case-files/{person_ref}/export", headers=staff_headers(), timeout=15)
    assert copy.status_code == 200, copy.text
    held = copy.json()["other_services"]
    assert [s["stay_ref"] for s in held["housing"]["stays"]] == [stay["stay_ref"]]
    assert held["housing"]["waiting_list"] == []
    assert held["referrals"]["person"]["person_ref"] == person_ref
    assert [r["referral_ref"] for r in held["referrals"]["referrals"]] == [referral_ref]
    assert any(m["partner_ref"] == CIRE and m["personal_data_shared"] for m in held["notify"]["messages"])

    erasure_ref = new_ref("ER")
    await publish(redis_url, namespace, Envelope.wrap(ErasureRequested(erasure_ref=erasure_ref, person_ref=person_ref)))

    confirmed = wait_for(lambda: (c := confirmations(redis_url, namespace, erasure_ref)) and len(c) == 3 and c)
    assert confirmed and set(confirmed) == {"housing", "referrals", "notify"}, stack.logs()
    assert all(c["person_ref"] == person_ref and c["service"] == s for s, c in confirmed.items())
    assert confirmed["housing"]["records_erased"] >= 1 and confirmed["referrals"]["records_erased"] >= 2

    # Art. 17(2): the partner that received the person's reference is told to erase it.
    notice = smtp_sink.mailbox.wait_for(lambda m: m["To"] == PARTNER_DESK and "Erasure request" in m["Subject"],
                                        timeout=40)
    assert len(notice) == 1 and person_ref in notice[0].get_body(("plain",)).get_content(), stack.logs()
    assert "Art. 17(2)" in notice[0].get_body(("plain",)).get_content()

    # Nothing answers for the person any more ...
    tombstone = f"ERASED-{erasure_ref}"
    assert get(f"{housing}/api/stays", person_ref=person_ref, open_only=False) == []
    assert get(f"{housing}/api/waitlist", person_ref=person_ref) == []
    assert person_ref not in json.dumps(get(f"{housing}/api/board"))
    person_view = get(f"{referrals}/api/people/{person_ref}")
    assert person_view["referrals"] == [] and person_view["consents"] == [] and not person_view["followed"]
    assert get(f"{referrals}/api/referrals", person_ref=person_ref) == []
    assert person_ref not in json.dumps(get(f"{referrals}/api/followed"))
    assert wait_for(lambda: deliveries(notify, person_ref=person_ref) == [] and
                    all(d["status"] == "sent" for d in deliveries(notify, event_type="ErasureRequested")))
    assert person_ref not in json.dumps(deliveries(notify, limit=500))

    # ... while the counts hold: the bed stays taken (under the tombstone), referrals keep their status.
    kept = get(f"{housing}/api/stays/{stay['stay_ref']}")
    assert kept["person_ref"] == tombstone and kept["place_ref"] == stay["place_ref"] and kept["ended_on"] is None
    assert occupancy(housing) == occupied_before
    assert len(get(f"{housing}/api/stays", open_only=False)) == stays_before
    assert by_status(referrals) == statuses_before
    assert get(f"{referrals}/api/referrals/{referral_ref}")["person_ref"] == tombstone
