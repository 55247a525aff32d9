"""Canary: unique markers put in every personal field of a full run are found afterwards in no
stream entry, dead letter, Redis AOF file, log line, audit entry or message to a partner."""

import sqlite3
import uuid
from pathlib import Path

import httpx
import redis

from shared.events import PRODUCERS, dead_letter_stream, stream_name

from .helpers import open_stay, staff_headers, wait_for


def test_personal_data_reaches_no_stream_aof_log_audit_entry_or_partner(stack_factory, own_redis, smtp_sink, namespace):
    tag = uuid.uuid4().hex[:10]
    markers = {
        "name": f"Canaryname{tag}",
        "email": f"canary{tag}@example.org",
        "phone": f"+32 470 {int(tag[:6], 16) % 1000000:06d}",
        "caller_name": f"Canarycaller{tag}",
        "caller_organisation": f"Canaryorg{tag}",
        "notes": f"Canarynotes{tag} slept at the station",
        "fedasil": f"FED-CANARY-{tag}",
        "override": f"Canaryoverride{tag}",
        "extension": f"Canaryextension{tag}",
        "approver": f"Canaryapprover{tag}",
    }
    demo_partners = Path(__file__).resolve().parents[2] / "services/notify/seed/partners.demo.json"
    stack = stack_factory(redis=own_redis.url, extra_env={"NOTIFY_SEED_PARTNERS": str(demo_partners)}).start()
    intake, housing, referrals = stack.url("intake"), stack.url("housing"), stack.url("referrals")
    headers = staff_headers()

    adult = httpx.post(f"{intake}/api/requests", headers=headers, timeout=15, json={
        "name": markers["name"], "date_of_birth": "2003-02-11", "phone": markers["phone"], "email": markers["email"],
        "channel": "partner", "caller": "on_behalf", "caller_name": markers["caller_name"],
        "caller_organisation": markers["caller_organisation"], "situation": "excluded", "urgency": "immediate",
        "needs": ["accommodation", "mental_health", "housing_search"], "notes": markers["notes"]})
    assert adult.status_code == 201, adult.text
    person_ref = adult.json()["person_ref"]
    cadal = httpx.post(f"{intake}/api/requests", headers=headers, timeout=15, json={
        "name": markers["name"] + "b", "stated_age": 27, "channel": "fedasil", "situation": "asylum_reception",
        "cadal": {"fedasil_designation_ref": markers["fedasil"], "lgbtqia_asylum_seeker": True}})
    assert cadal.status_code == 201, cadal.text
    override = httpx.post(f"{intake}/api/requests/{cadal.json()['request_ref']}/override", headers=headers, timeout=15,
                          json={"decision": "support_only", "reason": markers["override"]})
    assert override.status_code in (200, 201), override.text

    stay = wait_for(lambda: open_stay(housing, person_ref))
    assert stay, stack.logs()[-3000:]
    extended = httpx.post(f"{housing}/api/stays/{stay['stay_ref']}/extend", headers=headers, timeout=15, json={
        "new_end": "2030-01-31", "reason": markers["extension"], "approver": markers["approver"]})
    assert extended.status_code == 200, extended.text

    partner = httpx.get(f"{referrals}/api/directory/search", params={"category": "legal_aid"}, headers=headers,
                        timeout=15).json()[0]["partner_ref"]
    referral = httpx.post(f"{referrals}/api/referrals", headers=headers, timeout=15, json={
        "person_ref": person_ref, "partner_ref": partner, "category": "legal_aid", "share_personal_data": False})
    assert referral.status_code == 201, referral.text
    referral_ref = referral.json()["referral_ref"]
    partner_mails = smtp_sink.mailbox.wait_for(lambda m: referral_ref in m.as_string(), timeout=40)
    assert partner_mails, stack.logs()[-3000:]
    assert wait_for(lambda: smtp_sink.mailbox.wait_for(lambda m: person_ref in m["Subject"], timeout=1))

    client = redis.Redis.from_url(own_redis.url, socket_timeout=5)
    # A rewritten AOF as plain commands: with the default RDB preamble its base would be
    # compressed, and a scan of it could find nothing whatever it held.
    client.config_set("aof-use-rdb-preamble", "no")
    client.execute_command("BGREWRITEAOF")

    def rewritten():
        # The rewrite renames and deletes AOF files for a moment after the command returns.
        found = client.info("persistence")
        return (found["aof_rewrite_in_progress"], found["aof_rewrite_scheduled"],
                found["aof_last_bgrewrite_status"]) == (0, 0, "ok")

    assert wait_for(rewritten)
    streams = [stream_name(namespace, p) for p in PRODUCERS] + [dead_letter_stream(namespace)]
    places = {
        "streams and dead letters": b"".join(k + v for s in streams for _id, f in client.xrange(s) for k, v in f.items()),
        "Redis AOF files": b"".join(p.read_bytes() for p in Path(own_redis.data_dir).rglob("*.aof*") if p.is_file()),
        "service logs": stack.logs().encode(),
        "intake's audit log": _audit_rows(stack).encode(),
        "messages to partners": "".join(m.as_string() for m in smtp_sink.mailbox.messages
                                        if not m["To"].endswith("@refuge.example")).encode(),
    }
    assert person_ref.encode() in places["streams and dead letters"]  # the scan sees the run
    assert person_ref.encode() in places["Redis AOF files"]
    assert partner_mails and places["messages to partners"]
    # Health needs are special-category data: recorded in intake, never on the broker.
    assert b"housing_search" in places["streams and dead letters"]
    assert b"mental_health" not in places["streams and dead letters"]
    for where, content in places.items():
        for field, marker in markers.items():
            assert marker.encode() not in content, f"{field} found in {where}"
            assert marker.lower().encode() not in content.lower(), f"{field} found in {where}"


def _audit_rows(stack) -> str:
    url = stack.services["intake"].env["INTAKE_DATABASE_URL"]
    with sqlite3.connect(url.split(":///", 1)[1]) as db:
        rows = db.execute("SELECT * FROM intake_audit").fetchall()
    assert rows, "intake's audit log recorded nothing"
    return "\n".join(repr(r) for r in rows)
