"""Consent per partner and purpose (rule 8): given and withdrawn through intake's API, announced
with references only, listed in the case file."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from shared.auth import Role
from tests.conftest import store_kinds
from tests.service.test_intake_api import CALL, STAFF, headers, intake, outbox  # noqa: F401  (fixture)

pytestmark = pytest.mark.parametrize("store", store_kinds())


async def test_consent_is_given_listed_withdrawn_once_and_announced_without_personal_data(intake):
    person_ref = (await intake.post("/api/requests", json=CALL, headers=STAFF)).json()["person_ref"]
    until = (date.today() + timedelta(days=30)).isoformat()
    given = await intake.post(f"/api/case-files/{person_ref}/consents",
                              json={"partner_ref": "org-legal-1", "purpose": "referral:legal_aid", "expires_on": until},
                              headers=STAFF)
    assert given.status_code == 201, given.text
    consent = given.json()
    assert consent["in_force"] and consent["given_by"] == "sam.worker" and consent["expires_on"] == until

    case = (await intake.get(f"/api/case-files/{person_ref}", headers=STAFF)).json()
    assert [c["consent_ref"] for c in case["consents"]] == [consent["consent_ref"]]

    withdraw = f"/api/case-files/{person_ref}/consents/{consent['consent_ref']}/withdraw"
    assert (await intake.post(withdraw, headers=STAFF)).json()["in_force"] is False
    assert (await intake.post(withdraw, headers=STAFF)).status_code == 200
    listed = (await intake.get(f"/api/case-files/{person_ref}/consents", headers=STAFF)).json()
    assert listed[0]["withdrawn_by"] == "sam.worker"

    [given_event] = await outbox(intake, "ConsentGiven")
    withdrawn_events = await outbox(intake, "ConsentWithdrawn")
    assert len(withdrawn_events) == 1  # withdrawing twice tells no one twice
    assert given_event.payload == {"consent_ref": consent["consent_ref"], "person_ref": person_ref,
                                   "partner_ref": "org-legal-1", "purpose": "referral:legal_aid", "expires_on": until}
    assert CALL["name"] not in given_event.model_dump_json()


async def test_consent_refuses_unknown_purposes_past_days_and_other_peoples_files(intake):
    person_ref = (await intake.post("/api/requests", json=CALL, headers=STAFF)).json()["person_ref"]
    url = f"/api/case-files/{person_ref}/consents"
    bad = await intake.post(url, json={"partner_ref": "org-1", "purpose": "marketing"}, headers=STAFF)
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "purpose"
    past = await intake.post(url, json={"partner_ref": "org-1", "purpose": "health",
                                        "expires_on": (date.today() - timedelta(days=2)).isoformat()}, headers=STAFF)
    assert past.status_code == 422 and past.json()["detail"][0]["field"] == "expires_on"
    missing = await intake.post("/api/case-files/P-000000000000/consents",
                                json={"partner_ref": "org-1", "purpose": "referral"}, headers=STAFF)
    assert missing.status_code == 404
    not_staff = await intake.post(url, json={"partner_ref": "org-1", "purpose": "referral"},
                                  headers=headers(Role.housing))
    assert not_staff.status_code == 404
    unknown = await intake.post(f"{url}/C-000000000000/withdraw", headers=STAFF)
    assert unknown.status_code == 404


async def test_the_console_records_and_withdraws_a_consent_even_when_the_directory_is_unreachable(intake):
    person_ref = (await intake.post("/api/requests", json=CALL, headers=STAFF)).json()["person_ref"]
    token = STAFF["Authorization"].split()[1]
    intake.cookies.set("refuge_token", token)
    page = await intake.get(f"/case-files/{person_ref}")
    assert page.status_code == 200 and "consent-partner" in page.text
    csrf = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    done = await intake.post(f"/case-files/{person_ref}/consents",
                             data={"csrf_token": csrf, "partner_ref": "org-health-2", "purpose": "health"})
    assert done.status_code == 303
    page = await intake.get(f"/case-files/{person_ref}")
    assert "org-health-2" in page.text and "/withdraw" in page.text
    consent_ref = page.text.split('data-consent="')[1].split('"')[0]
    done = await intake.post(f"/case-files/{person_ref}/consents/{consent_ref}/withdraw", data={"csrf_token": csrf})
    assert done.status_code == 303
    listed = (await intake.get(f"/api/case-files/{person_ref}/consents", headers=STAFF)).json()
    assert listed[0]["in_force"] is False
