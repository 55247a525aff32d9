"""The console's places and notifications pages over the whole stack as processes, as staff use them:
signed in through the login form, forms posted with their CSRF token, names from intake next to
housing's and notify's references, each role shown what its services let it see."""

from __future__ import annotations

import asyncio
import re
from datetime import date

import httpx

from services.intake.accounts import StaffAccounts
from shared.auth import Role
from shared.store import make_engine, session_factory

from .helpers import open_stay, staff_headers, wait_for

PASSWORD = "a long enough password"
YEAR = date.today().year
ACCOUNTS = {"camille": Role.social_coordinator, "ana": Role.intake_worker, "ilse": Role.psychologist,
            "root": Role.administrator}


async def _create_accounts(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        accounts = StaffAccounts(session_factory(engine), time_cost=1, memory_kib=1024)
        for username, role in ACCOUNTS.items():
            await accounts.create(username, PASSWORD, [role])
    finally:
        await engine.dispose()


def csrf_of(page: httpx.Response) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def signed_in(base: str, username: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=20, headers={"Accept-Language": "en"})
    form = client.get("/login")
    done = client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": csrf_of(form),
                                       "next": "/"})
    assert done.status_code == 303 and "refuge_token" in client.cookies, done.text
    return client


def section(page: httpx.Response, section_id: str) -> str:
    found = re.search(rf'<section[^>]*id="{section_id}">(.*?)</section>', page.text, re.S)
    return found.group(1) if found else ""


def count(page: httpx.Response, kind: str, state: str) -> int:
    return int(re.search(rf'data-count="{state}">(\d+)<', section(page, f"kind-{kind}")).group(1))


def record(client: httpx.Client, **fields) -> str:
    form = client.get("/requests/new")
    done = client.post("/requests/new", data={"csrf_token": csrf_of(form), "channel": "phone",
                                              "needs": ["accommodation"], **fields})
    assert done.status_code == 303, done.text
    return done.headers["location"].split("/case-files/")[1].split("?")[0]


def post_form(client: httpx.Client, page_url: str, action: str, **fields) -> httpx.Response:
    return client.post(action, data={"csrf_token": csrf_of(client.get(page_url)), **fields})


def test_staff_see_places_and_the_delivery_log_and_a_clear_message_when_housing_and_notify_are_down(
        stack_factory, smtp_sink):
    stack = stack_factory().start()
    asyncio.run(_create_accounts(stack.services["intake"].env["INTAKE_DATABASE_URL"]))
    base, housing = stack.url("intake"), stack.url("housing")
    camille, ana, ilse, root = (signed_in(base, name) for name in ACCOUNTS)
    assert "/places" in camille.get("/").text and "/notifications" in ana.get("/").text
    assert 'href="/places"' not in ilse.get("/").text and 'href="/notifications"' not in ilse.get("/").text

    # The coordinator records a call; the admission e-mail is refused once by the mail server.
    smtp_sink.mailbox.scripted_replies.append("550 5.1.1 mailbox unavailable")
    noor = record(camille, name="Noor Haddad", date_of_birth=f"{YEAR - 22}-02-02", situation="excluded")
    stay = wait_for(lambda: open_stay(housing, noor))
    assert stay, stack.logs()

    # The board: counts by kind and state, the person by name, no address for a coordinator.
    places = camille.get("/places")
    assert places.status_code == 200 and count(places, "emergency", "occupied") == 1
    assert count(places, "emergency", "vacant") == 21 and count(places, "cadal", "occupied") == 0
    assert "Noor Haddad" in section(places, "kind-emergency") and f'href="/case-files/{noor}"' in places.text
    assert "Rue fictive" not in places.text
    assert "Rue fictive" in root.get("/places").text  # housing gives addresses to an administrator
    assert noor in ana.get("/places").text and "Noor Haddad" not in ana.get("/places").text  # not her case file
    refused = ilse.get("/places")
    assert refused.status_code == 403 and "Not available for your role" in refused.text

    # Notify alerts the coordinator; the link in the alert opens the failed message in the console.
    alerts = smtp_sink.mailbox.wait_for(lambda m: "n'a pas pu être remis" in m["Subject"], timeout=40)
    assert alerts, stack.logs()
    link = re.search(re.escape(base) + r"(/notifications/N-[0-9a-f]+)", alerts[0].get_body(("plain",)).get_content())
    failed = camille.get(link.group(0))
    assert failed.status_code == 200 and "Failed" in failed.text and 'data-outcome="permanent"' in failed.text
    assert f'href="/case-files/{noor}"' in failed.text and "PersonAdmitted" in failed.text
    assert "/retry" in failed.text
    assert ana.get(link.group(1)).status_code == 200 and "/retry" not in ana.get(link.group(1)).text  # coordinators retry
    assert ilse.get(link.group(1)).status_code == 403 and ilse.get("/notifications").status_code == 403
    assert camille.get("/notifications/N-000000000000").status_code == 404
    listed = camille.get("/notifications", params={"status": "failed", "event_type": "PersonAdmitted"})
    assert link.group(1) in listed.text and "Messages 1 to 1 of 1." in listed.text

    retried = post_form(camille, link.group(1), f"{link.group(1)}/retry")
    assert retried.status_code == 303 and retried.headers["location"] == f"{link.group(1)}?saved=retried"
    assert "Sent again" in camille.get(retried.headers["location"]).text
    assert wait_for(lambda: 'data-outcome="sent"' in camille.get(link.group(1)).text), stack.logs()
    assert smtp_sink.mailbox.wait_for(lambda m: noor in m["Subject"] and m["Subject"].startswith("Admission"))
    sent = camille.get("/notifications", params={"status": "sent", "person_ref": noor})
    assert link.group(1) in sent.text
    again = post_form(camille, link.group(1), f"{link.group(1)}/retry")
    assert again.status_code == 409 and "Only a failed message can be sent again" in again.text

    # Template previews in each language, the HTML part escaped into a sandboxed frame.
    assert "person_admitted" in camille.get("/notifications/templates").text
    preview = camille.get("/notifications/templates/person_admitted")
    assert "Une personne a été admise" in section(preview, "preview")
    assert "Een persoon werd opgenomen" in section(preview, "preview") and "A person was admitted" in preview.text
    assert 'sandbox="" srcdoc="&lt;!doctype html&gt;' in preview.text and '<html lang="nl">' not in preview.text
    assert camille.get("/notifications/templates/no_such_template").status_code == 404

    # Offers: housing offers post-shelter places to Sam (supported, no stay) and to Noor (still staying).
    sam = record(camille, name="Sam Peeters", stated_age="23", situation="at_risk")
    for person in (sam, noor):
        joined = httpx.post(f"{housing}/api/waitlist", json={"person_ref": person, "place_kind": "post_shelter"},
                            headers=staff_headers(Role.housing), timeout=10)
        assert joined.status_code == 201 and joined.json()["offer"], joined.text
    offers = {o["person_ref"]: o["offer_ref"] for o in
              httpx.get(f"{housing}/api/offers", headers=staff_headers(Role.housing), timeout=10).json()}
    places = camille.get("/places")
    assert "Sam Peeters" in section(places, "kind-post_shelter") and count(places, "post_shelter", "reserved") == 2
    assert "Accept the place" in places.text and "Accept the place" not in ana.get("/places").text

    accepted = post_form(camille, "/places", f"/places/offers/{offers[sam]}/accept")
    assert accepted.status_code == 303 and "Offer accepted" in camille.get(accepted.headers["location"]).text
    not_yet = post_form(camille, "/places", f"/places/offers/{offers[noor]}/accept")
    assert not_yet.status_code == 409 and "Housing did not record this answer" in not_yet.text
    refusal = post_form(camille, "/places", f"/places/offers/{offers[noor]}/refuse", reason="wants to stay put")
    assert refusal.status_code == 303
    places = camille.get(refusal.headers["location"])
    assert "Offer refused" in places.text and count(places, "post_shelter", "occupied") == 1
    assert count(places, "post_shelter", "reserved") == 0 and offers[noor] not in places.text

    # No CADAL place in service: the waiting list, in housing's order (urgency first, then time waiting).
    as_housing = staff_headers(Role.housing)
    for place in httpx.get(f"{housing}/api/places", params={"kind": "cadal"}, headers=as_housing, timeout=10).json():
        closed = httpx.post(f"{housing}/api/places/{place['place_ref']}/out-of-service", json={"reason": "works"},
                            headers=as_housing, timeout=10)
        assert closed.status_code == 200, closed.text
    for person, urgency in ((sam, "weeks"), (noor, "immediate")):
        joined = httpx.post(f"{housing}/api/waitlist", json={"person_ref": person, "place_kind": "cadal", "urgency": urgency},
                            headers=as_housing, timeout=10)
        assert joined.status_code == 201 and joined.json()["offer"] is None, joined.text
    cadal = camille.get("/places")
    assert count(cadal, "cadal", "out_of_service") == 12 and count(cadal, "cadal", "waiting") == 2
    line = re.findall(r'<li data-entry="[^"]+"><a href="/case-files/[^"]+">([^<]+)</a>', section(cadal, "kind-cadal"))
    assert line == ["Noor Haddad", "Sam Peeters"]

    # Housing's calendar moves to ten days before Noor's planned end: her stay is listed as ending.
    assert "Noor Haddad" not in section(places, "ending")
    length = (date.fromisoformat(stay["planned_end"]) - date.fromisoformat(stay["starts_on"])).days
    restarted = stack.services["housing"]
    restarted.stop()
    restarted.env["HOUSING_CLOCK_OFFSET_DAYS"] = str(length - 10)
    restarted.start()
    restarted.wait_healthy()
    ending = section(camille.get("/places"), "ending")
    assert f'<a href="/case-files/{noor}">Noor Haddad</a>' in ending and stay["stay_ref"] in ending

    # Housing and notify down: the console says so, and the rest of it still works.
    stack.services["housing"].stop()
    stack.services["notify"].stop()
    down = camille.get("/places")
    assert down.status_code == 200 and "Housing cannot be reached right now" in down.text
    for url in ("/notifications", link.group(1), "/notifications/templates/person_admitted"):
        page = camille.get(url)
        assert page.status_code == 200 and "Notify cannot be reached right now" in page.text, url
    retry_down = post_form(camille, link.group(1), f"{link.group(1)}/retry")
    assert retry_down.status_code == 503 and "the message was not sent again" in retry_down.text
    assert camille.get(f"/case-files/{noor}").status_code == 200 and camille.get("/").status_code == 200
    for client in (camille, ana, ilse, root):
        client.close()
