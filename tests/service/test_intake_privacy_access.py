"""Need-to-see in intake: a matrix of intake's case-file routes by role. An intake worker sees the
case files they recorded or followed up; health needs only reach the psychologist, the social
coordinator and the administrator; what is not the caller's to see is not found (404)."""

from __future__ import annotations

import pytest

from shared.auth import Role
from tests.conftest import store_kinds
from tests.service.test_intake_api import CALL, headers, intake  # noqa: F401  (fixture)

pytestmark = pytest.mark.parametrize("store", store_kinds())

OWNER = headers(Role.intake_worker, username="sam.worker")
ROLES = {
    "owner": OWNER,
    "other_worker": headers(Role.intake_worker, username="kim.worker"),
    "coordinator": headers(Role.social_coordinator, username="lea.coordinator"),
    "psychologist": headers(Role.psychologist, username="ilse.psy"),
    "administrator": headers(Role.administrator, username="root.admin"),
    "housing": headers(Role.housing, username="hugo.housing"),
}
# route -> expected status per role, in the order of ROLES
MATRIX = {
    ("GET", "/api/case-files/{p}"): (200, 404, 200, 200, 200, 404),
    ("GET", "/api/requests/{r}"): (200, 404, 200, 200, 200, 404),
    ("GET", "/api/people/{p}/timeline"): (200, 404, 200, 200, 200, 404),
    ("GET", "/api/case-files/{p}/consents"): (200, 404, 200, 200, 200, 404),
    ("POST", "/api/case-files/{p}/consents"): (201, 404, 201, 201, 201, 404),
    ("POST", "/api/requests/{r}/follow-up"): (200, 404, 200, 200, 200, 404),
    ("POST", "/api/requests/{r}/override"): (200, 404, 200, 200, 200, 404),
    ("GET", "/api/case-files/{p}/export"): (403, 403, 200, 403, 200, 404),
    ("GET", "/api/queue"): (200, 200, 200, 200, 200, 403),
    ("GET", "/api/case-files?q=noor"): (200, 200, 200, 200, 200, 403),
}
BODIES = {
    "/api/case-files/{p}/consents": {"partner_ref": "org-1", "purpose": "referral"},
    "/api/requests/{r}/follow-up": {"note": "called back"},
    "/api/requests/{r}/override": {"decision": "support_only", "reason": "no place needed after all"},
}


async def test_each_role_sees_only_what_it_needs_to(intake):
    recorded = (await intake.post("/api/requests", json=CALL, headers=OWNER)).json()
    p, r = recorded["person_ref"], recorded["request_ref"]
    refused = []
    for (method, route), expected in MATRIX.items():
        for (role, role_headers), status in zip(ROLES.items(), expected):
            url = route.format(p=p, r=r)
            response = await intake.request(method, url, headers=role_headers, json=BODIES.get(route))
            if response.status_code != status:
                refused.append((method, route, role, response.status_code, status))
    assert refused == []

    # Lists only show what the caller may open.
    found = {role: [c["person_ref"] for c in (await intake.get("/api/case-files", params={"q": "noor"},
                                                               headers=h)).json()]
             for role, h in ROLES.items() if role != "housing"}
    assert p in found["owner"] and p in found["coordinator"] and p not in found["other_worker"]
    queue = (await intake.get("/api/queue", headers=ROLES["other_worker"])).json()
    assert p not in str(queue)
    matches = (await intake.post("/api/case-files/matches", json={"name": CALL["name"], "phone": CALL["phone"]},
                                 headers=ROLES["other_worker"])).json()
    assert matches and matches[0]["person_ref"] == p and matches[0]["name"] == "" and matches[0]["date_of_birth"] is None

    # Health needs: only for the psychologist, the coordinator and the administrator.
    needs = {role: (await intake.get(f"/api/requests/{r}", headers=h)).json()["needs"]
             for role, h in ROLES.items() if role in ("owner", "coordinator", "psychologist", "administrator")}
    assert needs["owner"] == ["accommodation"]
    assert needs["psychologist"] == needs["coordinator"] == needs["administrator"] == ["accommodation", "mental_health"]

    # The erasure is the coordinator's or the administrator's; what it erased is then nobody's to see.
    assert (await intake.post(f"/api/case-files/{p}/erasure", json={"reason": "asked"}, headers=OWNER)).status_code == 403
    erased = await intake.post(f"/api/case-files/{p}/erasure", json={"reason": "asked"}, headers=ROLES["administrator"])
    assert erased.status_code == 201
    erasure = erased.json()["erasure_ref"]
    assert [(await intake.get(f"/api/erasures/{erasure}", headers=h)).status_code for h in ROLES.values()] == \
        [403, 403, 200, 403, 200, 404]
    assert (await intake.get(f"/api/case-files/{p}", headers=ROLES["administrator"])).status_code == 404
