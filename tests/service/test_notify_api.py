"""Notify's API as intake's console uses it: delivery log with filters, template previews, rules and
partner recipients, with the house rules for bad input and roles."""

from __future__ import annotations

from datetime import datetime

import httpx
import pytest

from shared.auth import Role
from shared.events.codes import PlaceKind
from shared.events.housing import PersonWaitlisted, PlaceFreed
from tests.e2e.helpers import staff_headers
from tests.service.test_notify_delivery import (  # noqa: F401  (fixtures)
    COORDINATOR,
    HOUSING,
    admitted,
    hooks,
    mails_to,
    notify,
    notify_database,
    postgres_for_notify,
    start_notify,
    until,
)

pytestmark = pytest.mark.parametrize("store", ["sqlite"])


async def test_the_delivery_log_filters_pages_and_counts(notify, smtp_sink):
    await notify.publish(admitted("P-log1"))
    await notify.publish(admitted("P-log2"))
    await notify.publish(PersonWaitlisted(person_ref="P-log3", place_kind=PlaceKind.emergency, position=1))
    await notify.publish(PlaceFreed(place_ref="PL-001", place_kind=PlaceKind.emergency))
    assert await until(lambda: len(mails_to(smtp_sink, COORDINATOR)) == 3 and len(mails_to(smtp_sink, HOUSING)) == 1)
    assert await until(lambda: _all_sent(notify, 4))

    page = await notify.api.get("/api/deliveries", params={"limit": 2})
    assert page.headers["X-Total-Count"] == "4" and len(page.json()) == 2
    rest = (await notify.api.get("/api/deliveries", params={"limit": 2, "offset": 2})).json()
    assert {d["notification_ref"] for d in page.json()}.isdisjoint(d["notification_ref"] for d in rest)
    assert [d["person_ref"] for d in await notify.deliveries(event_type="PersonAdmitted")] == ["P-log2", "P-log1"]
    assert [d["cause_event_type"] for d in await notify.deliveries(audience="housing_staff")] == ["PlaceFreed"]
    assert len(await notify.deliveries(person_ref="P-log3")) == 1
    assert await notify.deliveries(status="failed") == []
    first = (await notify.deliveries(event_type="PersonAdmitted"))[-1]
    assert await notify.deliveries(since=first["created_at"]) and await notify.deliveries(until=first["created_at"]) == []
    bad = await notify.api.get("/api/deliveries", params={"limit": 0, "since": "yesterday"})
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["detail"]} == {"query.limit", "query.since"}
    # Staff type local time without an offset: read in the refuge's zone, not refused with a 500.
    local = datetime.fromisoformat(first["created_at"]).astimezone(notify.notify.tz).replace(tzinfo=None).isoformat()
    assert await notify.deliveries(since=local) and await notify.deliveries(until=local) == []
    too_early = await notify.api.get("/api/deliveries", params={"since": "0001-01-01T00:30:00+01:00"})
    assert too_early.status_code == 422 and [e["field"] for e in too_early.json()["detail"]] == ["query.since"]
    assert (await notify.api.get("/api/deliveries/N-nothing")).status_code == 404
    metrics = (await notify.api.get("/metrics")).text
    assert 'refuge_domain{kind="sent",name="deliveries",service="notify"} 4.0' in metrics


async def _all_sent(notify, count):
    rows = await notify.deliveries(status="sent")
    return len(rows) == count


async def test_every_template_previews_in_each_language_and_partner_previews_honour_consent(notify):
    listed = (await notify.api.get("/api/templates")).json()
    names = {t["name"] for t in listed}
    assert {"person_admitted", "stay_ending", "digest", "partner_referral_made"} <= names
    assert all(t["languages"] == ["fr", "nl", "en"] for t in listed)
    referral = next(t for t in listed if t["name"] == "partner_referral_made")
    assert referral["kind"] == "partner" and "referral_link" in referral["variables"]

    subjects = {}
    for language in ("fr", "nl", "en"):
        preview = (await notify.api.get("/api/templates/stay_ending/preview", params={"language": language})).json()
        assert preview["language"] == language and preview["webhook_body"] is None
        assert f'<html lang="{language}">' in preview["html"]
        assert "https://console.refuge.example/case-files/P-0a1b2c3d4e5f" in preview["text"]
        subjects[language] = preview["subject"]
    assert len(set(subjects.values())) == 3

    plain = (await notify.api.get("/api/templates/partner_referral_made/preview", params={"language": "nl"})).json()
    assert "P-0a1b2c3d4e5f" not in plain["text"] + plain["html"] + str(plain["webhook_body"])
    assert plain["webhook_body"]["data"]["referral_link"].startswith("https://")
    consented = (await notify.api.get("/api/templates/partner_referral_made/preview",
                                      params={"language": "nl", "consent": "true"})).json()
    assert consented["consent"] and "P-0a1b2c3d4e5f" in consented["text"]
    assert (await notify.api.get("/api/templates/stay_ending/preview", params={"language": "de"})).status_code == 422
    assert (await notify.api.get("/api/templates/nothing/preview")).status_code == 404


async def test_rules_are_listed_created_checked_changed_and_removed(notify):
    vocabulary = (await notify.api.get("/api/rules/vocabulary")).json()
    assert "ReferralMade" in vocabulary["event_types"] and "partner_ref" in vocabulary["event_types"]["ReferralMade"]
    assert "NotificationFailed" not in vocabulary["event_types"]  # notify does not react to itself
    assert set(vocabulary["audiences"]) == {"social_coordinator", "housing_staff", "event_partner",
                                            "subscribed_partners", "informed_partners"}
    rules = (await notify.api.get("/api/rules")).json()
    assert {"referral-to-partner", "stays-ending-digest-to-housing"} <= {r["name"] for r in rules}

    rule = {"name": "moves-to-housing", "event_type": "PlaceFreed", "audience": "housing_staff",
            "template": "place_freed", "language": "en", "timing": "digest"}
    created = await notify.api.post("/api/rules", json=rule)
    assert created.status_code == 201
    body = created.json()
    assert body["channel"] == "email" and body["when"] == {} and body["enabled"] and body["updated_by"] == "test-coordinator"
    assert (await notify.api.post("/api/rules", json=rule)).status_code == 409
    assert (await notify.api.get(f"/api/rules/{body['id']}")).json()["name"] == "moves-to-housing"

    bad = await notify.api.post("/api/rules", json={
        **rule, "name": "Bad Name", "event_type": "PlaceFreed", "audience": "event_partner",
        "template": "partner_place_freed", "when": {"colour": ["red"]}})
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["detail"]} == {"name"}  # shape first
    bad = await notify.api.post("/api/rules", json={
        **rule, "name": "bad", "audience": "event_partner", "template": "partner_place_freed", "when": {"colour": ["red"]}})
    assert bad.status_code == 422
    problems = {e["field"]: e["reason"] for e in bad.json()["detail"]}
    assert problems == {"timing": "quiet hours and digests are for staff alerts", "audience": "PlaceFreed names no partner",
                        "when.colour": "not a field of PlaceFreed"}

    changed = await notify.api.put(f"/api/rules/{body['id']}", json={**rule, "timing": "immediate", "enabled": False})
    assert changed.status_code == 200 and changed.json()["timing"] == "immediate" and not changed.json()["enabled"]
    assert (await notify.api.delete(f"/api/rules/{body['id']}")).status_code == 204
    assert (await notify.api.get(f"/api/rules/{body['id']}")).status_code == 404
    assert (await notify.api.delete(f"/api/rules/{body['id']}")).status_code == 404


async def test_partners_are_registered_with_a_secret_shown_once_and_input_is_checked(notify):
    created = await notify.api.put("/api/partners/ORG-42", json={
        "email": "desk@org42.example", "webhook_url": "https://org42.example/hooks", "language": "nl",
        "subscriptions": ["PlaceFreed"]})
    assert created.status_code == 200
    secret = created.json()["webhook_secret"]
    assert secret.startswith("whsec_")
    shown = (await notify.api.get("/api/partners/ORG-42")).json()
    assert shown["webhook_secret"] is None and shown["has_webhook_secret"] and shown["language"] == "nl"
    assert secret not in (await notify.api.get("/api/partners")).text

    updated = await notify.api.put("/api/partners/ORG-42", json={"email": "new@org42.example",
                                                                 "webhook_url": "https://org42.example/hooks"})
    assert updated.json()["webhook_secret"] is None, "an existing secret is kept, not shown again"
    rotated = (await notify.api.post("/api/partners/ORG-42/webhook-secret")).json()["webhook_secret"]
    assert rotated.startswith("whsec_") and rotated != secret

    bad = await notify.api.put("/api/partners/ORG-43", json={
        "webhook_secret": "hunter2", "language": "de", "subscriptions": ["PlaceFreed", "Gossip"]})
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["detail"]} == {"language"}
    bad = await notify.api.put("/api/partners/ORG-43", json={"webhook_secret": "hunter2", "subscriptions": ["Gossip"]})
    assert {e["field"] for e in bad.json()["detail"]} == {"email", "webhook_secret", "subscriptions.0"}
    assert "hunter2" not in bad.text
    bad_mail = await notify.api.put("/api/partners/ORG-43", json={"email": "not-an-address"})
    assert bad_mail.status_code == 422 and "not-an-address" not in bad_mail.text
    assert (await notify.api.put("/api/partners/bad%20ref", json={"email": "a@b.example"})).status_code == 422
    assert (await notify.api.delete("/api/partners/ORG-42")).status_code == 204
    assert (await notify.api.get("/api/partners/ORG-42")).status_code == 404


async def test_only_signed_in_staff_read_and_only_coordinators_change_things(notify):
    anonymous = httpx.AsyncClient(transport=notify.api._transport, base_url="http://notify")
    intake_worker = httpx.AsyncClient(transport=notify.api._transport, base_url="http://notify",
                                      headers=staff_headers(Role.intake_worker))
    async with anonymous, intake_worker:
        assert (await anonymous.get("/api/deliveries")).status_code == 401
        assert (await intake_worker.get("/api/deliveries")).status_code == 200
        assert (await intake_worker.get("/api/rules")).status_code == 200
        assert (await intake_worker.put("/api/partners/ORG-1", json={"email": "a@b.example"})).status_code == 403
        assert (await intake_worker.post("/api/deliveries/N-x/retry")).status_code == 403
        rule = (await intake_worker.get("/api/rules")).json()[0]
        assert (await intake_worker.delete(f"/api/rules/{rule['id']}")).status_code == 403


async def test_the_demo_partners_are_seeded_once_and_staff_edits_survive_a_restart(start_notify):
    from pathlib import Path

    seed = str(Path(__file__).resolve().parents[2] / "services" / "notify" / "seed" / "partners.demo.json")
    first = await start_notify(seed_partners=seed)
    partners = (await first.api.get("/api/partners")).json()
    assert len(partners) == 20 and all(p["email"].endswith("@partners.example") for p in partners)
    samusocial = next(p for p in partners if p["subscriptions"] == ["PlaceFreed"])
    edited = await first.api.put(f"/api/partners/{samusocial['partner_ref']}",
                                 json={"email": "night@samusocial.example", "language": "en"})
    assert edited.status_code == 200
    rules = len((await first.api.get("/api/rules")).json())
    await first.runtime.stop()
    second = await start_notify(seed_partners=seed)
    again = (await second.api.get(f"/api/partners/{samusocial['partner_ref']}")).json()
    assert again["email"] == "night@samusocial.example" and again["subscriptions"] == []
    assert len((await second.api.get("/api/rules")).json()) == rules  # default rules are seeded once
