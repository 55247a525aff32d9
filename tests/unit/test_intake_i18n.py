"""The console speaks French, Dutch and English: every message has its translation, with the same
placeholders, and each catalogue compiles and renders."""

from zoneinfo import ZoneInfo

import pytest
from babel.messages.pofile import read_po

from services.intake import words
from services.intake.i18n import LANGUAGES, LOCALE_DIR, Console, extract_catalog, language_name

SOURCE = extract_catalog()


@pytest.mark.parametrize("lang", ["fr", "nl"])
def test_every_message_of_the_console_is_translated(lang):
    with (LOCALE_DIR / lang / "LC_MESSAGES" / "messages.po").open("rb") as f:
        catalog = read_po(f, locale=lang)
    translated = {m.id: m.string for m in catalog if m.id and m.string and "fuzzy" not in m.flags}
    missing = [m.id for m in SOURCE if m.id and m.id not in translated]
    assert missing == [], f"{len(missing)} messages untranslated in {lang}, e.g. {missing[:3]}"
    problems = [(message.id, [str(e) for e in errors]) for message, errors in catalog.check()]
    assert problems == []


def test_the_catalogues_compile_and_speak_each_language():
    console = Console(ZoneInfo("Europe/Brussels"))
    said = {lang: console.gettext(lang)(words.DECISIONS["refer"]) for lang in LANGUAGES}
    assert said == {"fr": "Orienter", "nl": "Doorverwijzen", "en": "Refer"}
    html = console.render("nl", "counters.html", counters=[{"key": "requests_processed", "text": "40 of meer",
                                                            "label": "Behandelde aanvragen"}])
    assert 'lang="nl"' in html and "Sinds de opening van de opvang" in html


def test_language_names_come_from_babel_in_the_staff_members_language():
    assert language_name("nl", "fr") == "Néerlandais"
    assert language_name("fr", "nl") == "Frans"
    assert language_name("ar", "en") == "Arabic"
