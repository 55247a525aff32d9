"""Need to see, checked route by route: every role against every operation of housing, referrals
and notify, taken from the apps' own routes (a new route nobody decided on fails here). Allowed
where the service's ACCESS matrix says so, 403 with the same body elsewhere; allowed reads leak
no address (except to housing and administrators) and never a webhook secret."""

import re
from contextlib import AsyncExitStack

import httpx
import pytest
from fastapi.routing import APIRoute

from services.housing.access import ACCESS as HOUSING_ACCESS
from services.housing.app import create_app as housing_app
from services.housing.settings import HousingSettings
from services.notify.access import ACCESS as NOTIFY_ACCESS
from services.notify.app import create_app as notify_app
from services.notify.settings import NotifySettings
from services.referrals.access import ACCESS as REFERRALS_ACCESS
from services.referrals.app import create_app as referrals_app
from services.referrals.settings import ReferralsSettings
from shared.auth import DEV_SECRET, Role, TokenSigner
from shared.web import DENIED
from tests.service.test_housing_clock import write_seed

ADDRESSES = ("Rue secrète 1", "Rue secrète 2")
# Routes that need no staff token, by decision: operations probes and the partners' signed-link pages.
PUBLIC = {"/health", "/health/stats", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json",
          "/partner/referral", "/partner/assets/partner.css"}
MATRICES = {"housing": HOUSING_ACCESS, "referrals": REFERRALS_ACCESS, "notify": NOTIFY_ACCESS}


def token(*roles: Role, username: str = "matrix") -> dict[str, str]:
    return {"Authorization": f"Bearer {TokenSigner(DEV_SECRET).issue(username, list(roles))}"}


def concrete(path: str) -> str:
    """A route template with references that exist nowhere (rule ids are numbers)."""
    return re.sub(r"\{(\w+)\}", lambda m: "999999" if m.group(1).endswith("_id") else "NONE-SUCH-1", path)


def api_routes(routes):
    """The app's routes, routers included (FastAPI keeps an included router as one entry; none of
    these services includes one under an extra prefix)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):
            yield from api_routes(route.original_router.routes)


def operations(app) -> list[tuple[str, str]]:
    found = sorted((method, route.path) for route in api_routes(app.routes) for method in route.methods)
    assert {path for _, path in found} >= {p for p in app.openapi()["paths"]}  # nothing hides from this list
    return found


@pytest.fixture
async def services(make_database, redis_url, namespace, tmp_path):
    seed = write_seed(tmp_path / "seed.json", {"emergency": 1, "cadal": 1})
    common = dict(redis_url=redis_url, namespace=namespace, poll_interval_ms=50)
    apps = {
        "housing": housing_app(HousingSettings(database_url=make_database("sqlite", "access_housing"),
                                               seed_file=str(seed), clock_tick_seconds=3600, **common)),
        "referrals": referrals_app(ReferralsSettings(database_url=make_database("sqlite", "access_referrals"),
                                                     **common)),
        "notify": notify_app(NotifySettings(database_url=make_database("sqlite", "access_notify"), smtp_port=1,
                                            **common)),
    }
    async with AsyncExitStack() as stack:
        clients = {}
        for name, app in apps.items():
            await stack.enter_async_context(app.router.lifespan_context(app))
            clients[name] = await stack.enter_async_context(httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url=f"http://{name}", timeout=10))
            clients[name].app = app
        yield clients


async def call(client, method: str, path: str, headers: dict) -> httpx.Response:
    body = {} if method in ("POST", "PUT") else None
    return await client.request(method, path, headers=headers, json=body)


async def test_every_operation_has_a_decision_and_every_role_gets_exactly_it(services):
    # A partner with a webhook: its secret is shown at registration and must never be read back.
    registered = await services["notify"].put("/api/partners/ORG-matrix", headers=token(Role.administrator),
                                              json={"webhook_url": "https://hooks.example/x", "email": "a@hooks.example"})
    assert registered.status_code == 200, registered.text
    secret = registered.json()["webhook_secret"]
    assert secret.startswith("whsec_")

    checked = {"allowed": 0, "denied": 0}
    for name, client in services.items():
        matrix = MATRICES[name]
        found = operations(client.app)
        undecided = [op for op in found if op not in matrix and op[1] not in PUBLIC]
        assert undecided == [], f"{name}: routes without an access decision: {undecided}"
        assert set(matrix) <= set(found), f"{name}: matrix names routes that do not exist"
        for method, template in found:
            if template in PUBLIC:
                continue
            path = concrete(template)
            anonymous = await call(client, method, path, {})
            assert anonymous.status_code == 401, (name, method, template)
            for role in Role:
                response = await call(client, method, path, token(role))
                if role.value in matrix[(method, template)]:
                    checked["allowed"] += 1
                    assert response.status_code not in (401, 403) and response.status_code < 500, \
                        (name, method, template, role, response.status_code, response.text[:200])
                    if method == "GET" and response.status_code == 200:
                        body = response.text
                        assert secret not in body and "whsec_" not in body, (name, template, role)
                        if role not in (Role.housing, Role.administrator):
                            assert not any(a in body for a in ADDRESSES), (name, template, role)
                else:
                    checked["denied"] += 1
                    assert response.status_code == 403, (name, method, template, role, response.status_code)
                    assert response.json() == {"detail": DENIED}
    assert checked["allowed"] > 100 and checked["denied"] > 40, checked


async def test_a_refusal_is_the_same_whether_the_thing_exists_or_not(services):
    notify, housing = services["notify"], services["housing"]
    assert (await notify.put("/api/partners/ORG-real", headers=token(Role.administrator),
                             json={"email": "desk@real.example"})).status_code == 200
    real = await notify.get("/api/partners/ORG-real", headers=token(Role.housing))
    none = await notify.get("/api/partners/ORG-none", headers=token(Role.housing))
    assert (real.status_code, real.content) == (none.status_code, none.content) == (403, b'{"detail":"%s"}' % DENIED.encode())
    # A refused command is refused before its body is read: no 422 telling what the body should hold.
    bad_body = await housing.post("/api/flats", headers=token(Role.psychologist), json={"code": 1})
    good_body = await housing.post("/api/flats", headers=token(Role.psychologist),
                                   json={"code": "F-Z", "address": "Rue 1"})
    assert (bad_body.status_code, bad_body.content) == (good_body.status_code, good_body.content)
    assert bad_body.status_code == 403


async def test_only_notify_s_own_token_fetches_a_partner_link_without_a_role(services):
    referrals = services["referrals"]
    path = "/api/referrals/RF-nothing/partner-link"
    assert (await referrals.get(path, headers=token(username="service:notify"))).status_code == 404
    assert (await referrals.get(path, headers=token(username="someone"))).status_code == 403
    # A staff account named like a role or a service gets nothing from its name.
    assert (await referrals.get(path, headers=token(Role.psychologist, username="service:notify"))).status_code == 403
    assert (await services["housing"].post("/api/flats", headers=token(Role.intake_worker, username="administrator"),
                                           json={"code": "F-Y", "address": "Rue 2"})).status_code == 403
    assert (await referrals.get("/api/people/P-1", headers=token(username="service:notify"))).status_code == 403


async def test_addresses_reach_only_housing_staff_and_administrators(services):
    housing = services["housing"]
    for role in Role:
        board = await housing.get("/api/board", headers=token(role))
        flats = await housing.get("/api/flats", headers=token(role))
        if role is Role.psychologist:
            assert board.status_code == flats.status_code == 403
            continue
        shown = role in (Role.housing, Role.administrator)
        for response in (board, flats):
            assert response.status_code == 200
            assert all(a in response.text for a in ADDRESSES) is shown
            assert any(a in response.text for a in ADDRESSES) is shown
