"""The staff console in headless Chromium (Debian's, never a downloaded one), against intake and
housing running as processes: sign in, record calls through the form, read the decision in words,
and see the person appear in housing's list, in English and in French (and in Dutch without JavaScript)."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import date

import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from shared.auth import DEV_SECRET, Role, TokenSigner
from shared.testing.stack import ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PASSWORD = "a long enough password"
YEAR = date.today().year


@pytest.fixture
def stack(stack_factory):
    stack = stack_factory().start(["intake", "housing"])
    env = stack.services["intake"].env
    created = subprocess.run([sys.executable, "-m", "services.intake.accounts", "create", "camille",
                              "--role", "intake_worker"], input=PASSWORD + "\n", text=True, capture_output=True,
                             cwd=ROOT, env=env, timeout=60)
    assert created.returncode == 0, created.stderr
    return stack


@pytest.fixture
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def stays_in_housing(stack) -> list[dict]:
    token = TokenSigner(DEV_SECRET).issue("test", [Role.housing])
    return httpx.get(f"{stack.url('housing')}/api/stays", headers={"Authorization": f"Bearer {token}"}, timeout=5).json()


def reload_until_visible(page: Page, selector: str, text: str, timeout: float = 20.0) -> None:
    """Events reach housing and come back within seconds: reload the page as staff would."""
    deadline = time.monotonic() + timeout
    while text not in page.locator(selector).inner_text() and time.monotonic() < deadline:
        time.sleep(0.3)
        page.reload()
    expect(page.locator(selector)).to_contain_text(text)


def record(page: Page, *, name: str, situation: str, phone: str, born: str | None = None, age: int | None = None) -> None:
    page.goto("/requests/new")
    page.select_option("#channel", "phone")
    page.fill("#name", name)
    if born:
        page.fill("#date_of_birth", born)
    if age is not None:
        page.fill("#stated_age", str(age))
    page.fill("#phone", phone)
    page.check(f'input[name="situation"][value="{situation}"]')
    page.check('input[name="needs"][value="accommodation"]')
    page.check('input[name="needs"][value="legal"]')
    page.locator("form.request-form button[type=submit]").click()


def test_staff_record_calls_read_the_decision_and_see_the_person_housed_in_english_and_french(stack, browser):
    base = stack.url("intake")
    page = browser.new_context(locale="en-GB", base_url=base).new_page()

    # Sign-in is required; the console remembers where staff wanted to go.
    page.goto("/stays")
    expect(page).to_have_url(f"{base}/login?next=/stays")
    page.fill("#username", "camille")
    page.fill("#password", "not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Unknown user name or wrong password.")
    page.fill("#password", PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{base}/stays")

    # Inline validation speaks the staff member's language, before anything is sent.
    page.goto("/requests/new")
    page.fill("#email", "not-an-address")
    page.locator("#email").blur()
    expect(page.locator('[data-error-for="email"]')).to_have_text("Enter a valid e-mail address.")
    expect(page.locator("#cadal")).to_be_hidden()  # CADAL criteria appear only for asylum seekers
    page.check('input[name="situation"][value="asylum_reception"]')
    expect(page.locator("#cadal")).to_be_visible()
    page.fill("#email", "")

    # An adult excluded from home: accommodated by the rules, explained in words.
    record(page, name="Alex Janssens", situation="excluded", phone="+32 470 00 11 22", born=f"{YEAR - 22}-04-01")
    decision = page.get_by_test_id("decision")
    expect(decision).to_contain_text("Accommodate · Youth refuge")
    expect(decision).to_contain_text("Accommodate in the youth refuge (emergency place).")
    expect(decision).to_contain_text("within the youth refuge's band of 18 to 25")
    expect(decision).to_contain_text("Decided by the rules")
    person_alex = page.url.split("/case-files/")[1].split("?")[0]

    page.get_by_role("link", name="Stays").click()
    reload_until_visible(page, "main", "Alex Janssens")
    assert any(s["person_ref"] == person_alex for s in stays_in_housing(stack))
    page.goto(f"/case-files/{person_alex}")
    reload_until_visible(page, "#timeline", "Admitted to place")
    expect(page.locator("#where-now")).to_contain_text("In a stay")

    # The staff member switches to French; the console follows, from then on.
    page.select_option("#lang-choice", "fr")
    expect(page.locator("html")).to_have_attribute("lang", "fr")
    expect(page.locator("#where-now")).to_contain_text("En séjour")

    page.goto("/requests/new")
    page.fill("#name", "Lou Martin")
    page.select_option("#channel", "walk_in")
    page.check('input[name="situation"][value="excluded"]')
    page.get_by_role("button", name="Enregistrer et évaluer").click()  # neither birth date nor age
    expect(page.locator('[data-error-for="stated_age"]')).to_have_text(
        "Indiquez une date de naissance ou un âge entre 0 et 120.")

    # Same phone number as Alex: staff are asked, and nothing is linked until they choose.
    record(page, name="Lou Martin", situation="excluded", phone="0470/00.11.22", age=16)
    matches = page.get_by_role("group", name="Cette personne a peut-être déjà un dossier")
    expect(matches).to_contain_text("Alex Janssens")
    expect(matches).to_contain_text("même numéro de téléphone")
    page.get_by_label("Aucune de ces personnes : ouvrir un nouveau dossier").check()
    page.get_by_role("button", name="Enregistrer et évaluer").click()
    decision = page.get_by_test_id("decision")
    expect(decision).to_contain_text("Orienter · Mineur·e")
    expect(decision).to_contain_text("Une personne mineure ne reçoit jamais de place")
    expect(decision).to_contain_text("16 ans (déclaré) : une personne mineure ne peut jamais recevoir de place.")
    person_lou = page.url.split("/case-files/")[1].split("?")[0]

    record(page, name="Sam Peeters", situation="excluded", phone="+32 486 12 34 56", age=24)
    expect(page.get_by_test_id("decision")).to_contain_text("Héberger au refuge jeunes (place d'urgence).")
    page.get_by_role("link", name="Séjours").click()
    reload_until_visible(page, "main", "Sam Peeters")
    # Housing reads intake's events in order: Lou's came first and gave no place.
    expect(page.locator("main")).not_to_contain_text("Lou Martin")
    assert person_lou not in [s["person_ref"] for s in stays_in_housing(stack)]

    page.goto("/")
    expect(page.get_by_role("heading", level=1)).to_contain_text("File du jour")
    expect(page.locator("main")).to_contain_text("Lou Martin")  # the minor's follow-up keeps them in view

    # Progressive enhancement: a browser without JavaScript (and in Dutch) gets the same service.
    without_javascript_the_form_still_works_and_the_server_explains_each_field(stack, browser)


def without_javascript_the_form_still_works_and_the_server_explains_each_field(stack, browser):
    base = stack.url("intake")
    page = browser.new_context(locale="nl-BE", base_url=base, java_script_enabled=False).new_page()
    page.goto("/login")
    expect(page.get_by_role("heading", level=1)).to_have_text("Aanmelden")
    page.fill("#username", "camille")
    page.fill("#password", PASSWORD)
    page.get_by_role("button", name="Aanmelden").click()
    page.goto("/requests/new")
    page.fill("#name", "Noa")
    page.select_option("#channel", "partner")
    page.check('input[name="situation"][value="at_risk"]')
    page.get_by_role("button", name="Registreren en beoordelen").click()
    expect(page.locator('[data-error-for="stated_age"]')).to_have_text(
        "Geef een geboortedatum of een leeftijd tussen 0 en 120.")
    expect(page.locator("#name")).to_have_value("Noa")
    page.fill("#stated_age", "19")
    page.get_by_role("button", name="Registreren en beoordelen").click()
    expect(page.get_by_test_id("decision")).to_contain_text("Begeleiding zonder plaats (preventief)")
