"""The staff console in process, over HTTP as a browser would use it (forms, cookies, redirects)."""

from __future__ import annotations

import re
import time
from datetime import date

import httpx
import pytest
from itsdangerous import TimestampSigner

from services.housing.access import ACCESS as HOUSING_ACCESS
from services.intake import access
from services.intake.app import create_app
from services.notify.access import ACCESS as NOTIFY_ACCESS
from services.intake.settings import IntakeSettings
from shared.auth import DEV_SECRET, Role, TokenSigner

PASSWORD = "a long enough password"
YEAR = date.today().year


@pytest.fixture
async def console(make_database, redis_url, namespace):
    settings = IntakeSettings(redis_url=redis_url, database_url=make_database("sqlite", "intake"), namespace=namespace,
                              keys_database_url=make_database("sqlite", "intake-keys"),  # not ./var's
                              consumer_name="intake-test", counters_cache_seconds=0,
                              # Still argon2id, cheaper: these tests are about the console, not the hash's cost.
                              argon2_time_cost=1, argon2_memory_kib=1024,
                              # nothing listens: housing and notify are "unreachable"
                              housing_url="http://127.0.0.1:9", notify_url="http://127.0.0.1:9")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        await app.state.staff_accounts.create("ana", PASSWORD, [Role.intake_worker])
        await app.state.staff_accounts.create("lou", PASSWORD, [Role.housing])
        await app.state.staff_accounts.create("ilse", PASSWORD, [Role.psychologist])
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake.test",
                                     headers={"Accept-Language": "en-GB,en;q=0.8"}) as client:
            yield client


def csrf_of(page: httpx.Response) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


async def sign_in(client, username="ana", password=PASSWORD) -> httpx.Response:
    page = await client.get("/login")
    return await client.post("/login", data={"username": username, "password": password, "csrf_token": csrf_of(page),
                                             "next": "/requests/new"})


def error_for(page: httpx.Response, field: str) -> str:
    found = re.search(rf'data-error-for="{field}"[^>]*>([^<]*)<', page.text)
    return found.group(1) if found else ""


async def test_sign_in_is_required_and_sets_the_shared_token_as_a_strict_http_only_cookie(console):
    first = await console.get("/case-files/P-000000000000")
    assert first.status_code == 303 and first.headers["location"] == "/login?next=/case-files/P-000000000000"

    page = await console.get("/login")
    refused = await console.post("/login", data={"username": "ana", "password": PASSWORD})
    assert refused.status_code == 403 and "refuge_token" not in refused.headers.get("set-cookie", "")
    wrong = await console.post("/login", data={"username": "ana", "password": "wrong password!",
                                               "csrf_token": csrf_of(page)})
    assert wrong.status_code == 401 and "Unknown user name or wrong password." in wrong.text
    assert "wrong password!" not in wrong.text

    signed_in = await sign_in(console)
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/requests/new"
    cookie = signed_in.headers["set-cookie"]
    assert "refuge_token=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=28800" in cookie
    token = console.cookies["refuge_token"]
    assert TokenSigner(DEV_SECRET).verify(token).username == "ana"
    assert (await console.get("/api/queue")).status_code == 200  # the same sign-in works for the API

    form = await console.get("/requests/new")
    assert form.status_code == 200 and form.headers["x-frame-options"] == "DENY"
    assert form.headers["cache-control"] == "no-store" and "frame-ancestors 'none'" in form.headers["content-security-policy"]
    signed_out = await console.post("/logout", data={"csrf_token": csrf_of(form)})
    assert signed_out.status_code == 303 and 'refuge_token=""' in signed_out.headers["set-cookie"]
    assert (await console.get("/")).status_code == 303


async def test_an_expired_session_sends_staff_back_to_sign_in(console, monkeypatch):
    nine_hours_ago = int(time.time()) - 9 * 3600
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: nine_hours_ago)
    console.cookies.set("refuge_token", TokenSigner(DEV_SECRET).issue("ana", [Role.intake_worker]))
    monkeypatch.undo()
    page = await console.get("/")
    assert page.status_code == 303 and page.headers["location"].endswith("expired=1")
    assert (await console.get("/api/queue")).status_code == 401


async def test_every_form_needs_the_csrf_token_of_its_own_session(console):
    await sign_in(console)
    call = {"name": "Robin", "channel": "phone", "situation": "excluded", "stated_age": "20"}
    assert (await console.post("/requests/new", data=call)).status_code == 403
    forged = TokenSigner(DEV_SECRET).issue("mo", [Role.intake_worker])
    assert (await console.post("/requests/new", data={**call, "csrf_token": "0" * 64})).status_code == 403
    other_session = httpx.AsyncClient(transport=console._transport, base_url="http://intake.test",
                                      cookies={"refuge_token": forged})
    async with other_session:
        stolen = csrf_of(await other_session.get("/requests/new"))
    assert (await console.post("/requests/new", data={**call, "csrf_token": stolen})).status_code == 403
    assert (await console.get("/api/case-files", params={"q": "robin"})).json() == []


async def test_the_form_explains_each_refused_field_in_the_staff_members_language_and_the_decision_too(console):
    await sign_in(console)
    form = await console.get("/requests/new")
    switched = await console.post("/language", data={"lang": "nl", "next": "/requests/new", "csrf_token": csrf_of(form)})
    assert switched.status_code == 303 and console.cookies["refuge_lang"] == "nl"
    form = await console.get("/requests/new")
    assert "Een hulpvraag registreren" in form.text

    bad = await console.post("/requests/new", data={"csrf_token": csrf_of(form), "name": "Robin Peeters",
                                                     "channel": "phone", "situation": "excluded",
                                                     "email": "robin-at-example", "phone": "call me"})
    assert bad.status_code == 422
    assert error_for(bad, "stated_age") == "Geef een geboortedatum of een leeftijd tussen 0 en 120."
    assert error_for(bad, "email") == "Geef een geldig e-mailadres."
    assert error_for(bad, "phone").startswith("Geef een telefoonnummer")
    assert error_for(bad, "name") == ""
    assert 'value="Robin Peeters"' in bad.text  # what staff typed is kept

    done = await console.post("/requests/new", data={"csrf_token": csrf_of(form), "name": "Robin Peeters",
                                                      "channel": "phone", "situation": "excluded",
                                                      "date_of_birth": f"{YEAR - 17}-01-01", "needs": ["legal", "social"]})
    assert done.status_code == 303
    case = await console.get(done.headers["location"])
    assert "Doorverwijzen" in case.text and "Een minderjarige krijgt nooit een plaats" in case.text
    assert "Opvolging gepland op" in case.text and "De huisvestingsdienst is nu niet bereikbaar" in case.text

    request_ref = re.search(r'id="(R-[0-9a-f]{12})"', case.text).group(1)
    refused = await console.post(f"/requests/{request_ref}/override",
                                 data={"csrf_token": csrf_of(case), "decision": "accommodate", "reason": "er is plaats"})
    assert refused.status_code == 422 and "Een minderjarige kan nooit een plaats krijgen." in refused.text
    assert (await console.get(f"/api/requests/{request_ref}")).json()["decision"] == "refer"


async def test_a_second_call_asks_staff_to_confirm_the_likely_match_before_linking(console):
    await sign_in(console)
    form = await console.get("/requests/new")
    call = {"csrf_token": csrf_of(form), "name": "Sacha Dubois", "channel": "phone", "situation": "excluded",
            "date_of_birth": f"{YEAR - 22}-05-05", "phone": "0470 11 22 33"}
    first = await console.post("/requests/new", data=call)
    person_ref = first.headers["location"].split("/")[2].split("?")[0]

    again = await console.post("/requests/new", data={**call, "name": "sacha  dubois", "channel": "walk_in"})
    assert again.status_code == 200 and "This person may already have a case file" in again.text
    assert person_ref in again.text and "same name, same date of birth, same phone number" in again.text
    linked = await console.post("/requests/new", data={**call, "channel": "walk_in", "link": person_ref})
    assert linked.status_code == 303 and linked.headers["location"].startswith(f"/case-files/{person_ref}?")
    separate = await console.post("/requests/new", data={**call, "link": "new"})
    assert not separate.headers["location"].startswith(f"/case-files/{person_ref}?")
    case = (await console.get(f"/api/case-files/{person_ref}")).json()
    assert len(case["requests"]) == 2


async def test_a_role_without_case_files_sees_none_and_the_public_counters_need_no_sign_in(console):
    await sign_in(console, "lou")
    home = await console.get("/")
    assert home.status_code == 303 and home.headers["location"] == "/places"  # housing staff land on the places
    for case_file_page in ("/search", "/stays", "/requests/new", "/case-files/P-0a1b2c3d4e5f"):
        assert (await console.get(case_file_page)).status_code == 403, case_file_page
    places = await console.get("/places")
    assert places.status_code == 200 and nav_of(places) == ["/places", "/notifications"]
    assert (await console.get("/notifications")).status_code == 200
    console.cookies.clear()
    counters = await console.get("/counters?lang=fr")
    assert counters.status_code == 200 and "set-cookie" not in counters.headers
    assert "frame-ancestors *" in counters.headers["content-security-policy"] and "x-frame-options" not in counters.headers
    assert counters.text.count("moins de 5") >= 3
    assert (await console.get("/api/public/counters")).json()["counters"][0]["shown"] == "<5"


def nav_of(page: httpx.Response) -> list[str]:
    nav = re.search(r'<nav aria-label="[^"]*">(.*?)</nav>', page.text, re.S).group(1)
    return re.findall(r'href="([^"]+)"', nav)


async def test_places_and_notifications_say_so_when_housing_or_notify_cannot_be_reached(console):
    await sign_in(console)
    queue = await console.get("/")
    assert nav_of(queue) == ["/", "/requests/new", "/search", "/stays", "/places", "/notifications"]
    token = csrf_of(queue)

    places = await console.get("/places")
    assert places.status_code == 200 and "Housing cannot be reached right now." in places.text
    for url in ("/notifications", "/notifications/N-0a1b2c3d4e5f", "/notifications/templates",
                "/notifications/templates/person_admitted"):
        page = await console.get(url)
        assert page.status_code == 200 and "Notify cannot be reached right now." in page.text, url

    # Nothing is done without the form's token; with it, staff are told nothing was done.
    assert (await console.post("/notifications/N-0a1b2c3d4e5f/retry", data={})).status_code == 403
    retried = await console.post("/notifications/N-0a1b2c3d4e5f/retry", data={"csrf_token": token})
    assert retried.status_code == 503 and "the message was not sent again" in retried.text
    assert (await console.post("/places/offers/O-0a1b2c3d4e5f/accept", data={})).status_code == 403
    accepted = await console.post("/places/offers/O-0a1b2c3d4e5f/accept", data={"csrf_token": token})
    assert accepted.status_code == 503 and "nothing was recorded" in accepted.text
    long_reason = await console.post("/places/offers/O-0a1b2c3d4e5f/refuse", data={"csrf_token": token, "reason": "x" * 1001})
    assert long_reason.status_code == 422

    # References go to the other services' URLs only when they look like references.
    assert (await console.get("/notifications/N-1.json")).status_code == 404
    assert (await console.get("/notifications/templates/Person-Admitted")).status_code == 404
    assert (await console.post("/places/offers/O.1/refuse", data={"csrf_token": token})).status_code == 404
    bad = await console.get("/notifications", params={"person_ref": "P 1; drop", "status": "lost"})
    assert bad.status_code == 422 and error_for(bad, "person_ref") == "A case file reference looks like P-0a1b2c3d4e5f."
    assert '<option value="lost"' not in bad.text
    assert (await console.get("/notifications", params={"page": "²"})).status_code == 200


async def test_the_console_shows_other_services_pages_only_to_the_roles_they_serve(console):
    await sign_in(console, "ilse")
    page = await console.get("/")
    assert page.status_code == 200 and nav_of(page) == ["/", "/requests/new", "/search", "/stays"]
    console.cookies.clear()
    assert (await console.get("/places")).headers["location"] == "/login?next=/places"
    assert (await console.get("/notifications?status=failed")).headers["location"] == \
        "/login?next=/notifications%3Fstatus%3Dfailed"

    # The console's role sets are housing's and notify's own access matrices.
    assert access.PLACES_ROLES == HOUSING_ACCESS[("GET", "/api/board")] == HOUSING_ACCESS[("GET", "/api/waitlist")]
    assert access.OFFER_ROLES == HOUSING_ACCESS[("POST", "/api/offers/{offer_ref}/accept")]
    assert access.NOTIFICATIONS_ROLES == NOTIFY_ACCESS[("GET", "/api/deliveries")] == NOTIFY_ACCESS[("GET", "/api/templates")]
    assert access.RETRY_ROLES == NOTIFY_ACCESS[("POST", "/api/deliveries/{notification_ref}/retry")]
