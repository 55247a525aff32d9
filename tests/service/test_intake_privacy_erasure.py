"""Erasure (Art. 17) and the person's copy (Art. 15) in intake: erased at once in one unit of work,
announced with references only, confirmations from the other services shown, counters unchanged."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from shared.auth import Role
from shared.events import Envelope, stream_name
from shared.events.codes import PlaceKind
from shared.events.erasure import ErasureConfirmed
from shared.events.housing import PersonAdmitted
from tests.conftest import store_kinds
from tests.service.test_intake_api import CALL, STAFF, headers, intake, outbox, wait_until  # noqa: F401  (fixture)

pytestmark = pytest.mark.parametrize("store", store_kinds())

COORDINATOR = headers(Role.social_coordinator, username="lea.coordinator")


async def publish(intake, namespace, producer, event) -> None:
    envelope = Envelope.wrap(event)
    await intake.app.state.runtime.broker.publish(envelope.model_dump(mode="json"), stream=stream_name(namespace, producer))


async def test_an_erasure_empties_intake_keeps_the_counters_and_gathers_each_services_confirmation(intake, namespace):
    call = {**CALL, "email": "noor@example.org", "caller_name": "Aunt Mieke"}
    recorded = (await intake.post("/api/requests", json=call, headers=STAFF)).json()
    person_ref = recorded["person_ref"]
    await intake.post(f"/api/case-files/{person_ref}/consents", json={"partner_ref": "org-1", "purpose": "referral"},
                      headers=STAFF)
    today = date.today()
    await publish(intake, namespace, "housing", PersonAdmitted(
        stay_ref="S-1", person_ref=person_ref, place_ref="PL-001", place_kind=PlaceKind.emergency, starts_on=today,
        planned_end=today + timedelta(days=90)))

    async def admitted():
        timeline = await intake.get(f"/api/people/{person_ref}/timeline", headers=STAFF)
        return [t["event_type"] for t in timeline.json()] == ["PersonAdmitted"]
    assert await wait_until(admitted)

    export = await intake.get(f"/api/case-files/{person_ref}/export", headers=COORDINATOR)
    assert export.status_code == 200 and "attachment" in export.headers["content-disposition"]
    document = export.json()
    assert document["case_file"]["email"] == "noor@example.org"
    assert document["case_file"]["consents"][0]["partner_ref"] == "org-1"
    assert document["requests_as_recorded"][0]["notes"] == CALL["notes"]
    assert document["requests_as_recorded"][0]["caller_name"] == "Aunt Mieke"
    # Nothing listens where this intake expects the other services: the copy says it is incomplete.
    assert document["other_services"] == {s: {"unavailable": f"{s} could not be reached"}
                                          for s in ("housing", "referrals", "notify")}
    assert (await intake.get(f"/api/case-files/{person_ref}/export", headers=STAFF)).status_code == 403

    counters_before = (await intake.get("/api/public/counters")).json()
    url = f"/api/case-files/{person_ref}/erasure"
    assert (await intake.post(url, json={"reason": "asked by the person"}, headers=STAFF)).status_code == 403
    assert (await intake.post(url, json={"reason": "  "}, headers=COORDINATOR)).json()["detail"][0]["field"] == "reason"
    erased = await intake.post(url, json={"reason": "asked by the person on the phone"}, headers=COORDINATOR)
    assert erased.status_code == 201, erased.text
    erasure = erased.json()
    assert erasure["requested_by"] == "lea.coordinator" and erasure["records_erased"] >= 4
    assert erasure["waiting_for"] == ["housing", "referrals", "notify"] and not erasure["complete"]

    # Nothing of the person is found any more, by any road.
    assert (await intake.get(f"/api/case-files/{person_ref}", headers=STAFF)).status_code == 404
    assert (await intake.get(f"/api/requests/{recorded['request_ref']}", headers=STAFF)).status_code == 404
    assert (await intake.get("/api/case-files", params={"q": "Noor"}, headers=STAFF)).json() == []
    assert (await intake.get("/api/case-files", params={"q": person_ref}, headers=STAFF)).json() == []
    queue = (await intake.get("/api/queue", headers=STAFF)).json()
    assert person_ref not in str(queue)
    assert (await intake.post(url, json={"reason": "again"}, headers=COORDINATOR)).status_code == 404
    assert (await intake.get("/api/public/counters")).json() == counters_before

    [announced] = await outbox(intake, "ErasureRequested")
    assert announced.payload == {"erasure_ref": erasure["erasure_ref"], "person_ref": person_ref}

    for service, producer in (("housing", "housing"), ("referrals", "referrals"), ("referrals", "referrals"),
                              ("notify", "notify")):
        await publish(intake, namespace, producer, ErasureConfirmed(
            erasure_ref=erasure["erasure_ref"], person_ref=person_ref, service=service, records_erased=2))

    async def confirmed():
        shown = await intake.get(f"/api/erasures/{erasure['erasure_ref']}", headers=COORDINATOR)
        return shown.json()["complete"]
    assert await wait_until(confirmed)
    shown = (await intake.get(f"/api/erasures/{erasure['erasure_ref']}", headers=COORDINATOR)).json()
    assert sorted(c["service"] for c in shown["confirmations"]) == ["housing", "notify", "referrals"]
    assert (await intake.get(f"/api/erasures/{erasure['erasure_ref']}", headers=STAFF)).status_code == 403

    # What survives in intake's store holds no personal value.
    async with intake.app.state.runtime.sessions() as session:
        from sqlalchemy import text
        rows = []
        for table in ("intake_case_file", "intake_request", "intake_assessment", "intake_timeline", "intake_consent"):
            rows += [str(tuple(r)) for r in (await session.exec(text(f"SELECT * FROM {table}"))).all()]
    dump = "\n".join(rows)
    for value in ("Noor", "Vandenberghe", "470 12", "noor@example.org", "Mieke", "station"):
        assert value not in dump


async def test_a_coordinator_erases_from_the_console_and_sees_who_has_confirmed(intake):
    person_ref = (await intake.post("/api/requests", json=CALL, headers=STAFF)).json()["person_ref"]
    intake.cookies.set("refuge_token", STAFF["Authorization"].split()[1])
    page = await intake.get(f"/case-files/{person_ref}")
    assert "erasure-reason" not in page.text  # an intake worker is not offered erasure
    intake.cookies.set("refuge_token", COORDINATOR["Authorization"].split()[1])
    page = await intake.get(f"/case-files/{person_ref}")
    assert "erasure-reason" in page.text and f"/api/case-files/{person_ref}/export" in page.text
    csrf = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    done = await intake.post(f"/case-files/{person_ref}/erasure", data={"csrf_token": csrf, "reason": "person asked"})
    assert done.status_code == 303 and done.headers["location"].startswith("/erasures/E-")
    shown = await intake.get(done.headers["location"])
    assert shown.status_code == 200 and 'class="waiting" data-service="housing"' in shown.text
    assert (await intake.get(f"/case-files/{person_ref}")).status_code == 404
