"""Intake and housing as processes: a staff decision outside the age band leads to a stay, a minor never
does, and what staff and the public see is built from the events that came back."""

from datetime import date

import httpx
import redis

from shared.events import stream_name

from .helpers import PERSON, open_stay, post_request, staff_headers, wait_for

YEAR = date.today().year


def test_a_case_by_case_decision_is_housed_a_minor_never_and_the_case_file_follows_the_person(
        stack_factory, redis_url, namespace):
    stack = stack_factory(extra_env={"INTAKE_COUNTERS_CACHE_SECONDS": "0"}).start(["intake", "housing"])
    intake, housing = stack.url("intake"), stack.url("housing")

    minor = post_request(intake, date_of_birth=None, stated_age=17, name="Kim Minor-Canary")
    assert (minor["decision"], minor["track"], minor["refer_to"]) == ("refer", "minor", "youth_services")
    older = post_request(intake, date_of_birth=f"{YEAR - 27}-01-01", name="Jo Older-Canary")
    assert older["decision"] == "decline" and older["needs_review"] is True

    decided = httpx.post(f"{intake}/api/requests/{older['request_ref']}/override", timeout=10,
                         headers=staff_headers(username="ines.coord"),
                         json={"decision": "accommodate", "reason": "known to the team; no other safe place tonight"})
    assert decided.status_code == 200, decided.text
    assert decided.json()["decided_by"] == "ines.coord"

    stay = wait_for(lambda: open_stay(housing, older["person_ref"]))
    assert stay, stack.logs()
    assert open_stay(housing, minor["person_ref"]) is None  # housing read the minor's decision first

    def housed_case_file():
        case = httpx.get(f"{intake}/api/case-files/{older['person_ref']}", headers=staff_headers(), timeout=5).json()
        return case if case["where_now"] == "in_stay" else None

    case = wait_for(housed_case_file)
    assert case, stack.logs()
    assert [t["event_type"] for t in case["timeline"]] == ["PersonAdmitted"]
    assert case["timeline"][0]["details"]["stay_ref"] == stay["stay_ref"]
    assert [h["decided_by"] for h in case["requests"][0]["history"]] == ["rules", "ines.coord"]

    counters = httpx.get(f"{intake}/api/public/counters", timeout=5)
    assert counters.status_code == 200 and "Canary" not in counters.text
    assert {c["key"]: c["shown"] for c in counters.json()["counters"]}["young_people_accommodated"] == "<5"

    # The broker saw references and codes: the minor's referral and follow-up date, never who they are.
    client = redis.Redis.from_url(redis_url)
    raw = b"".join(k + v for _id, fields in client.xrange(stream_name(namespace, "intake")) for k, v in fields.items())
    assert minor["follow_up_on"].encode() in raw and b"youth_services" in raw
    for secret in ("Kim Minor", "Older-Canary", PERSON["phone"], "no other safe place", f"{YEAR - 27}-01-01"):
        assert secret.encode() not in raw, secret
