"""Property: whatever is sent, intake never fails, and a request it accepts gets exactly one decision
(one assessment record, one RequestAssessed event), while a refused one leaves no trace."""

from __future__ import annotations

from datetime import date

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlmodel import func, select

from services.intake.app import create_app
from services.intake.settings import IntakeSettings
from services.intake.store import AssessmentRecord, HelpRequest
from shared.auth import DEV_SECRET, Role, TokenSigner
from shared.events import Envelope
from shared.events.codes import Channel, Decision, Need, Track, Urgency
from shared.messaging import OutboxEntry
from tests.conftest import store_kinds

STAFF = {"Authorization": f"Bearer {TokenSigner(DEV_SECRET).issue('prop', [Role.intake_worker])}"}


def some(valid, junk=st.nothing(), one_in: int = 12):
    """Mostly valid values, now and then junk, so that both accepted and refused requests are explored."""
    return st.integers(1, one_in).flatmap(lambda draw: junk if draw == 1 and not junk.is_empty else valid)


iso_day = st.dates(min_value=date(1890, 1, 1), max_value=date(2031, 12, 31)).map(date.isoformat)
junk = st.one_of(st.none(), st.integers(-10, 10**6), st.text(max_size=8), st.booleans())
codes = lambda enum: st.sampled_from([e.value for e in enum])  # noqa: E731
cadal = st.fixed_dictionaries({}, optional={
    "fedasil_designation_ref": st.one_of(st.none(), st.text(max_size=70)),
    "lgbtqia_asylum_seeker": st.booleans(), "faces_discrimination": st.booleans(),
    "mental_health_compatible": st.booleans(), "accepts_house_rules": st.booleans(),
})
calls = st.fixed_dictionaries(
    {
        "name": some(st.text(min_size=1, max_size=40), st.text(max_size=300)),
        "channel": some(codes(Channel), junk),
        "situation": some(st.sampled_from(["excluded", "at_risk", "asylum_reception", "other"]), junk),
    },
    optional={
        "date_of_birth": some(iso_day, junk),
        "stated_age": some(st.integers(0, 120), junk),
        "language": some(st.sampled_from(["fr", "nl", "en", "ar"]), junk),
        "phone": some(st.from_regex(r"\A\+?[0-9 ]{6,20}\Z"), junk),
        "email": some(st.emails(), junk),
        "safe_to_leave_message": some(st.booleans(), junk),
        "preferred_contact": some(st.sampled_from(["phone", "email", "through_caller", "in_person"]), junk),
        "caller": some(st.sampled_from(["self", "on_behalf"]), junk),
        "urgency": some(codes(Urgency), junk),
        "needs": some(st.lists(codes(Need), max_size=12), st.lists(junk, max_size=3)),
        "notes": some(st.text(max_size=200), junk),
        "cadal": some(st.one_of(st.none(), cadal), junk),
    },
)
# Now and then a field the API does not know, or a case file that does not exist.
mixed = st.tuples(calls, st.integers(1, 20)).map(
    lambda c: {**c[0], **({"nickname": "x"} if c[1] == 1 else {"person_ref": "P-000000000000"} if c[1] == 2 else {})})


@st.composite
def well_formed(draw):
    """Calls as staff record them: every value of the right shape, in any combination."""
    situation = draw(st.sampled_from(["excluded", "at_risk", "asylum_reception", "other"]))
    call = {
        "name": draw(st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=60)
                     .filter(str.strip)),
        "channel": draw(codes(Channel)), "situation": situation, "urgency": draw(codes(Urgency)),
        "needs": draw(st.lists(codes(Need), max_size=9)), "language": draw(st.sampled_from(["fr", "nl", "en", "fa"])),
        "safe_to_leave_message": draw(st.booleans()),
    }
    if draw(st.booleans()):
        call["date_of_birth"] = draw(st.dates(min_value=date(1930, 1, 1), max_value=date.today())).isoformat()
    else:
        call["stated_age"] = draw(st.integers(0, 120))
    if draw(st.booleans()):
        call["email"] = draw(st.from_regex(r"\A[a-z][a-z0-9.]{0,10}@refuge\.be\Z"))
        call["preferred_contact"] = draw(st.sampled_from(["phone", "email", "through_caller", "in_person"]))
    if situation == "asylum_reception" and draw(st.booleans()):
        call["cadal"] = draw(cadal.filter(lambda c: "\x00" not in (c.get("fedasil_designation_ref") or "")))
    return call


calls = st.one_of(well_formed(), mixed)


@pytest.fixture(params=store_kinds())
def client(request, make_database, redis_url, namespace):
    settings_ = IntakeSettings(redis_url=redis_url, database_url=make_database(request.param, "intake"),
                               namespace=namespace, consumer_name="intake-prop")
    with TestClient(create_app(settings_)) as test_client:
        yield test_client


async def _facts(app, request_ref: str | None) -> tuple[int, int, int, list[Envelope]]:
    async with app.state.runtime.sessions() as session:
        requests = (await session.exec(select(func.count()).select_from(HelpRequest))).one()
        records = (await session.exec(select(func.count()).select_from(AssessmentRecord)
                                      .where(AssessmentRecord.request_ref == request_ref))).one()
        rows = (await session.exec(select(OutboxEntry).where(OutboxEntry.event_type == "RequestAssessed"))).all()
    assessed = [e for e in (Envelope.model_validate_json(r.body) for r in rows) if e.payload["request_ref"] == request_ref]
    return requests, records, len(rows), assessed


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(call=calls)
def test_any_request_the_api_accepts_gets_exactly_one_decision(client, call):
    before_requests, _, before_events, _ = client.portal.call(_facts, client.app, None)
    response = client.post("/api/requests", json=call, headers=STAFF)
    assert response.status_code in (201, 422), response.text
    event(f"answered {response.status_code}")
    if response.status_code == 422:
        event(f"refused {sorted(e['field'] for e in response.json()['detail'])}")

    if response.status_code == 422:
        assert all(e["field"] and e["reason"] for e in response.json()["detail"])
        requests, _, events, _ = client.portal.call(_facts, client.app, None)
        assert (requests, events) == (before_requests, before_events)  # refused: nothing recorded, nothing sent
        return

    body = response.json()
    requests, records, events, assessed = client.portal.call(_facts, client.app, body["request_ref"])
    assert requests == before_requests + 1 and records == 1 and events == before_events + 1
    assert len(assessed) == 1 and assessed[0].payload["decision"] == body["decision"]
    assert Decision(body["decision"]) and Track(body["track"]) and len(body["history"]) == 1
    assert body["rules"], "a decision always says why"
    if body["track"] == "minor":
        assert body["decision"] == "refer" and body["place_kind"] is None and body["follow_up_on"]
    if body["decision"] == "accommodate" and body["track"] == "cadal":
        assert all(r["passed"] for r in body["rules"] if r["rule"].startswith("cadal_"))
