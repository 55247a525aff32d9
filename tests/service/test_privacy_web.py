"""The web surface of housing, referrals and notify: security headers on every answer (API, pages,
refusals, crashes), HSTS outside development, and a crash that tells the caller nothing."""

import httpx
import pytest
from fastapi import FastAPI

from services.housing.app import create_app as housing_app
from services.housing.settings import HousingSettings
from services.notify.app import create_app as notify_app
from services.notify.settings import NotifySettings
from services.referrals.app import create_app as referrals_app
from services.referrals.settings import ReferralsSettings
from shared.web import install_error_handlers

SERVICES = {
    "housing": (housing_app, HousingSettings, "/api/board"),
    "referrals": (referrals_app, ReferralsSettings, "/api/referrals"),
    "notify": (notify_app, NotifySettings, "/api/deliveries"),
}


def build(name: str, make_database, **overrides) -> FastAPI:
    create, settings_class, _ = SERVICES[name]
    return create(settings_class(database_url=make_database("sqlite", f"web_{name}"), **overrides))


async def get(app: FastAPI, path: str, base_url: str = "http://service", **kwargs) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
        return await client.get(path, **kwargs)


def assert_hardened(response: httpx.Response) -> None:
    csp = response.headers["content-security-policy"]
    for directive in ("default-src", "frame-ancestors 'none'", "form-action 'self'", "base-uri 'none'"):
        assert directive in csp, (directive, csp)
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "camera=()" in response.headers["permissions-policy"]
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("name", list(SERVICES))
async def test_every_answer_carries_the_security_headers(name, make_database):
    app = build(name, make_database)
    refused = await get(app, SERVICES[name][2])
    assert refused.status_code == 401
    assert_hardened(refused)
    assert "strict-transport-security" not in refused.headers  # plain http in development
    over_https = await get(app, SERVICES[name][2], base_url="https://service")
    assert over_https.headers["strict-transport-security"].startswith("max-age=")
    behind_proxy = await get(app, SERVICES[name][2], headers={"x-forwarded-proto": "https"})
    assert "strict-transport-security" in behind_proxy.headers


@pytest.mark.parametrize("name", list(SERVICES))
async def test_outside_development_every_answer_asks_for_https(name, make_database):
    secrets = {"link_secret": "a-link-secret-only-for-this-test"} if name == "referrals" else {}
    app = build(name, make_database, environment="production", auth_secret="a-production-secret-only-for-this-test",
                **secrets)
    response = await get(app, SERVICES[name][2])
    assert response.headers["strict-transport-security"] == "max-age=63072000; includeSubDomains"


async def test_the_partner_page_needs_no_inline_style_and_is_never_framed(make_database):
    app = build("referrals", make_database)
    page = await get(app, "/partner/referral", params={"token": "not-a-real-token"})
    assert page.status_code in (400, 403, 404, 410) and "<style" not in page.text and " style=" not in page.text
    assert_hardened(page)
    assert 'href="/partner/assets/partner.css"' in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "style-src 'self'" in page.headers["content-security-policy"]
    stylesheet = await get(app, "/partner/assets/partner.css")
    assert stylesheet.status_code == 200 and stylesheet.headers["content-type"].startswith("text/css")
    assert "font-family" in stylesheet.text and stylesheet.headers["x-content-type-options"] == "nosniff"


async def test_a_crash_answers_a_bare_500_with_no_traceback_and_the_headers():
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/api/boom")
    async def boom():
        raise RuntimeError("secret detail: Rue secrète 1, P-0a1b2c3d4e5f")

    response = await get(app, "/api/boom")
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error"}
    assert "Rue secrète" not in response.text and "Traceback" not in response.text and "RuntimeError" not in response.text
    assert_hardened(response)


async def test_the_api_documentation_page_still_loads_its_viewer(make_database):
    app = build("housing", make_database)
    docs = await get(app, "/docs")
    assert docs.status_code == 200
    assert "https://cdn.jsdelivr.net" in docs.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in docs.headers["content-security-policy"]
