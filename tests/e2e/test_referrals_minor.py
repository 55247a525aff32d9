"""Rule 2 end to end, every service its own process: a minor's call becomes a referral to youth
services, the partner is mailed a signed link, and closes the loop from it without an account."""

import re
from datetime import date

import httpx
import redis

from shared.events import PRODUCERS, stream_name
from shared.testing.stack import SERVICES, free_port

from .helpers import PERSON, post_request, staff_headers, wait_for

MINOR = {**PERSON, "name": "Yasmine Minor-Canary", "date_of_birth": f"{date.today().year - 16}-05-02",
         "phone": "+32 471 22 33 44", "email": "yasmine.canary@example.org", "needs": ["accommodation", "social"],
         "notes": "Her father put her out after she came out"}
LINK = re.compile(r"https?://[^\s\"<>]+/partner/referral\?token=[A-Za-z0-9_.\-]+")


def test_a_minors_call_ends_in_a_youth_services_referral_a_mail_to_the_partner_and_a_closed_loop(
        stack_factory, smtp_sink, redis_url, namespace):
    ports = {name: free_port() for name in SERVICES}
    referrals_url = f"http://127.0.0.1:{ports['referrals']}"
    stack = stack_factory(ports=ports, extra_env={"NOTIFY_REFERRALS_URL": referrals_url,
                                                  "REFERRALS_PUBLIC_BASE_URL": referrals_url}).start()
    staff = staff_headers()

    # Staff find the youth-services partner in the directory and tell notify how to reach it.
    youth = httpx.get(f"{referrals_url}/api/directory/search", params={"category": "youth_services"}, headers=staff).json()
    assert [(p["name"], p["referral_email"]) for p in youth] == [("Caritas International", "infofr@caritasint.be")]
    caritas = youth[0]["partner_ref"]
    registered = httpx.put(f"{stack.url('notify')}/api/partners/{caritas}", headers=staff, timeout=10,
                           json={"email": youth[0]["referral_email"], "language": "fr"})
    assert registered.status_code == 200, registered.text

    created = post_request(stack.url("intake"), **MINOR)
    assert (created["decision"], created["track"]) == ("refer", "minor")
    person_ref = created["person_ref"]

    found = wait_for(lambda: httpx.get(f"{referrals_url}/api/referrals", params={"person_ref": person_ref},
                                       headers=staff).json())
    assert found, stack.logs()
    (referral,) = found
    assert (referral["category"], referral["partner_ref"], referral["status"], referral["origin"]) == (
        "youth_services", caritas, "pending", "minor_request")
    assert referral["cause_ref"] == created["request_ref"] and referral["shares_personal_data"] is False
    referral_ref = referral["referral_ref"]
    client = redis.Redis.from_url(redis_url)

    def referral_on_broker():
        # The outbox relay publishes after the commit that the API already shows, so wait for it.
        raw = b"".join(k + v for _id, fields in client.xrange(stream_name(namespace, "referrals")) for k, v in fields.items())
        return b"ReferralMade" in raw and referral_ref.encode() in raw

    assert wait_for(referral_on_broker), stack.logs()

    # notify mails the partner, in French, with the signed link; no housing happens.
    mails = smtp_sink.mailbox.wait_for(lambda m: m["To"] == "infofr@caritasint.be" and referral_ref in m.as_string())
    assert len(mails) == 1, stack.logs()
    text = mails[0].get_body(preferencelist=("plain",)).get_content()
    link = LINK.search(text)
    assert link, text
    assert link.group(0).startswith(referrals_url)
    stays = httpx.get(f"{stack.url('housing')}/api/stays", headers=staff, timeout=5).json()
    assert all(s["person_ref"] != person_ref for s in stays)

    # The partner opens the link (no account), accepts, then closes the loop.
    for action, extra in (("accept", {}), ("complete", {"outcome": "got_help"})):
        page = httpx.get(link.group(0), timeout=10)
        assert page.status_code == 200 and person_ref not in page.text and MINOR["name"] not in page.text
        form = re.search(rf'<form[^>]*id="{action}"[^>]*>(.*?)</form>', page.text, re.S).group(1)
        fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', form))
        posted = httpx.post(f"{referrals_url}/partner/referral", data={**fields, **extra}, timeout=10)
        assert posted.status_code == 303, posted.text
    closed = httpx.get(f"{referrals_url}/api/referrals/{referral_ref}", headers=staff).json()
    assert (closed["status"], closed["outcome"]) == ("completed", "got_help")
    assert [h["actor_kind"] for h in closed["history"]] == ["system", "partner", "partner"]

    # Rule 7: nothing personal on any stream or in any mail.
    raw = b"".join(k + v for p in PRODUCERS for _id, fields in client.xrange(stream_name(namespace, p))
                   for k, v in fields.items())
    mail_text = "".join(m.as_string() for m in smtp_sink.mailbox.messages)
    for secret in (MINOR["name"], "Minor-Canary", MINOR["phone"], MINOR["email"], MINOR["date_of_birth"], "father"):
        assert secret.encode() not in raw, f"{secret!r} found on the broker"
        assert secret not in mail_text, f"{secret!r} found in a mail"
