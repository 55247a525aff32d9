"""Templates in three languages, text and HTML, and the rules that point at them."""

import re

import pytest

from services.notify.domain import LANGUAGES, partner_view
from services.notify.rendering import CATALOGUE, Renderer
from services.notify.rules import DEFAULT_RULES, rule_problems

renderer = Renderer()
STAFF_EXTRA = {"console_url": "https://console.refuge.example", "notification_ref": "N-sample"}


def context_for(info, *, consent: bool) -> dict:
    if info.kind == "staff":
        return {**info.sample, **STAFF_EXTRA}
    view = partner_view(info.sample, disclose_person=consent)
    if "referral_link" in info.sample:
        view["referral_link"] = info.sample["referral_link"]
    return view


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_every_template_exists_in_french_dutch_and_english_as_text_and_html(name):
    info = CATALOGUE[name]
    assert renderer.languages(name) == list(LANGUAGES)
    texts = {}
    for language in LANGUAGES:
        rendered = renderer.email(name, language, context_for(info, consent=True))
        assert rendered.subject and "\n" not in rendered.subject and "{{" not in rendered.subject
        assert rendered.text.strip() and "{{" not in rendered.text
        assert f'<html lang="{language}">' in rendered.html
        texts[language] = rendered.text
    assert len(set(texts.values())) == 3, "each language has its own wording"


def test_staff_alerts_carry_references_and_a_console_link():
    rendered = renderer.email("person_admitted", "fr", context_for(CATALOGUE["person_admitted"], consent=True))
    assert "P-0a1b2c3d4e5f" in rendered.subject
    assert "https://console.refuge.example/case-files/P-0a1b2c3d4e5f" in rendered.text
    assert '<a href="https://console.refuge.example/case-files/P-0a1b2c3d4e5f">' in rendered.html
    assert "2 mai 2026" in rendered.text  # dates are written in the message's language
    assert "2 mei 2026" in renderer.email("person_admitted", "nl", context_for(CATALOGUE["person_admitted"], consent=True)).text


@pytest.mark.parametrize("name", sorted(n for n, t in CATALOGUE.items() if t.kind == "partner"))
def test_partner_templates_name_the_person_only_with_consent(name):
    info = CATALOGUE[name]
    person = info.sample.get("person_ref")
    for language in LANGUAGES:
        without = renderer.email(name, language, context_for(info, consent=False))
        if person:
            assert person not in without.subject + without.text + without.html
        if "person_ref" in renderer.variables(name):
            assert person in renderer.email(name, language, context_for(info, consent=True)).text


def test_the_referral_template_carries_the_signed_link_and_needs_it():
    assert renderer.needs_referral_link("partner_referral_made")
    assert not renderer.needs_referral_link("partner_place_freed")
    rendered = renderer.email("partner_referral_made", "nl", context_for(CATALOGUE["partner_referral_made"], consent=False))
    assert "https://refuge.example/r/sample-signed-token" in rendered.text
    assert "Nieuwe doorverwijzing" in rendered.subject


def test_html_escapes_what_it_is_given():
    info = CATALOGUE["referral_status_changed"]
    rendered = renderer.email("referral_status_changed", "en", {**info.sample, **STAFF_EXTRA, "reason_code": "<script>x</script>"})
    assert "<script>" not in rendered.html and "&lt;script&gt;" in rendered.html
    assert "<script>x</script>" in rendered.text  # plain text stays as it is


def test_the_default_rules_are_valid():
    for rule in DEFAULT_RULES:
        assert rule_problems({"language": None, "when": {}, **rule}, renderer) == [], rule["name"]


def test_invalid_rules_name_the_field_and_the_reason():
    base = dict(name="x", event_type="ReferralMade", audience="event_partner", channel="all",
                template="partner_referral_made", language=None, timing="immediate", when={})
    assert rule_problems(base, renderer) == []
    cases = {
        "event_type": dict(event_type="NotificationDelivered"),
        "audience": dict(audience="everyone"),
        "template": dict(template="person_admitted"),  # a staff template for a partner: never
        "timing": dict(timing="digest"),
        "language": dict(language="de"),
        "when.colour": dict(when={"colour": ["red"]}),
        "when.status": dict(when={"status": []}),
    }
    for field, change in cases.items():
        assert field in [f for f, _ in rule_problems({**base, **change}, renderer)], field
    staff = dict(base, audience="social_coordinator", template="person_admitted", channel="webhook")
    assert ("channel", "staff are reached by e-mail") in rule_problems(staff, renderer)
    no_partner = dict(base, event_type="StayEnding", template="partner_place_freed")
    assert [f for f, _ in rule_problems(no_partner, renderer)] == ["template", "audience"]
    wrong_fields = dict(staff, channel="email", event_type="StayExtended", template="stay_ending")
    assert rule_problems(wrong_fields, renderer) == [("template", "uses days_before, days_left, which StayExtended does not carry")]


@pytest.fixture(scope="module")
def console_app(tmp_path_factory):
    from services.intake.app import create_app
    from services.intake.settings import IntakeSettings

    where = tmp_path_factory.mktemp("intake")
    return create_app(IntakeSettings(database_url=f"sqlite+aiosqlite:///{where / 'intake.db'}",
                                     keys_database_url=f"sqlite+aiosqlite:///{where / 'keys.db'}"))


def serves_page(app, path: str) -> bool:
    """Intake's app has a GET route for this path that is a console page (not its API, not a file)."""
    from starlette.routing import Match

    scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "query_string": b"", "headers": []}
    page = not path.startswith(("/api/", "/static/"))
    return page and any(route.matches(scope)[0] == Match.FULL for route in app.router.routes)


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_every_console_link_in_a_message_opens_a_page_the_console_serves(name, console_app):
    console = STAFF_EXTRA["console_url"]
    links = re.compile(re.escape(console) + r"(/[^\s<>\"]*)?")
    info = CATALOGUE[name]
    for language in LANGUAGES:
        rendered = renderer.email(name, language, context_for(info, consent=True))
        paths = [m.group(1) or "/" for m in links.finditer(rendered.text + rendered.html)]
        if info.kind == "staff":
            assert paths, f"{name} ({language}) links staff to the console"
        for path in paths:
            assert serves_page(console_app, path), f"{name} ({language}) links to {path}, which the console does not serve"


def test_the_link_check_sees_a_page_the_console_does_not_serve(console_app):
    assert serves_page(console_app, "/case-files/P-0a1b2c3d4e5f") and serves_page(console_app, "/places")
    assert serves_page(console_app, "/notifications/N-0a1b2c3d4e5f")
    assert not serves_page(console_app, "/people/P-0a1b2c3d4e5f")
    assert not serves_page(console_app, "/api/case-files/P-0a1b2c3d4e5f")
