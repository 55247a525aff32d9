"""The console's languages: Babel message catalogues, compiled when the app starts.

The `.po` files under `locale/<lang>/LC_MESSAGES/messages.po` are the source; they are compiled
in memory at start-up (no `.mo` file to forget). After changing a template or `words.py`:

    python -m services.intake.i18n extract   # rewrites locale/messages.pot from the sources
    python -m services.intake.i18n update    # merges new messages into each language's .po
"""

from __future__ import annotations

import gettext
import io
import sys
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from babel import Locale
from babel.core import negotiate_locale
from babel.dates import format_date, format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from jinja2 import Environment, FileSystemLoader, select_autoescape

HERE = Path(__file__).parent
LOCALE_DIR = HERE / "locale"
TEMPLATES = HERE / "templates"
LANGUAGES = ("fr", "nl", "en")
LANGUAGE_COOKIE = "refuge_lang"


def compile_catalogue(po_path: Path) -> gettext.GNUTranslations:
    with po_path.open("rb") as f:
        catalog = read_po(f, locale=po_path.parent.parent.name)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


class Console:
    """One Jinja environment per language, each with its catalogue installed."""

    def __init__(self, zone: ZoneInfo, default_language: str = "fr", locale_dir: Path = LOCALE_DIR):
        self.zone = zone
        self.default_language = default_language
        self.translations = {lang: compile_catalogue(locale_dir / lang / "LC_MESSAGES" / "messages.po")
                             for lang in LANGUAGES}
        self.environments = {lang: self._environment(lang) for lang in LANGUAGES}

    def _environment(self, lang: str) -> Environment:
        env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
                          extensions=["jinja2.ext.i18n"], trim_blocks=True, lstrip_blocks=True)
        env.install_gettext_translations(self.translations[lang], newstyle=True)
        env.globals.update(lang=lang, languages=LANGUAGES, language_name=lambda code: language_name(code, lang),
                           autonym=lambda code: language_name(code, code))
        env.filters["day"] = lambda d: format_day(d, lang)
        env.filters["moment"] = lambda t: format_datetime(_aware(_moment(t)).astimezone(self.zone), "medium", locale=lang) if t else ""
        return env

    def gettext(self, lang: str):
        return self.translations[lang].gettext

    def language_of(self, request) -> str:
        chosen = request.cookies.get(LANGUAGE_COOKIE)
        if chosen in LANGUAGES:
            return chosen
        wanted = [part.split(";")[0].strip().replace("-", "_")
                  for part in request.headers.get("accept-language", "").split(",") if part.strip()]
        return negotiate_locale(wanted, LANGUAGES) or self.default_language

    def render(self, lang: str, template: str, **context) -> str:
        return self.environments[lang].get_template(template).render(**context)


def _aware(moment: datetime) -> datetime:
    from datetime import UTC

    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _moment(value: datetime | str) -> datetime:
    """Other services' answers carry moments as ISO 8601 text."""
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def format_day(value: date | str | None, lang: str) -> str:
    if not value:
        return ""
    if isinstance(value, str):
        value = date.fromisoformat(value[:10])
    return format_date(value, "long", locale=lang)


def language_name(code: str, in_language: str) -> str:
    """'nl' in French is 'néerlandais': Babel's CLDR data names every language in the staff's own."""
    name = Locale.parse(in_language).languages.get(code, code)
    return name[:1].upper() + name[1:]


# --- catalogue maintenance -----------------------------------------------------------------------

def extract_catalog():
    """Every message the templates, words.py and console.py ask to translate."""
    from babel.messages.catalog import Catalog
    from babel.messages.extract import extract_from_dir

    catalog = Catalog(project="refuge-intake", msgid_bugs_address="", charset="utf-8")
    method_map = [("templates/**.html", "jinja2"), ("words.py", "python"), ("console.py", "python")]
    options = {"templates/**.html": {"extensions": "jinja2.ext.i18n", "trimmed": "true"}}
    for filename, lineno, message, comments, context in extract_from_dir(
            HERE, method_map, options_map=options, keywords={"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}):
        catalog.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    return catalog


def extract() -> None:
    from babel.messages.pofile import write_po

    catalog = extract_catalog()
    with (LOCALE_DIR / "messages.pot").open("wb") as f:
        write_po(f, catalog, width=100, omit_header=False, sort_output=True)
    print(f"{len(catalog)} messages in {LOCALE_DIR / 'messages.pot'}")


def update() -> None:
    from babel.messages.pofile import write_po

    with (LOCALE_DIR / "messages.pot").open("rb") as f:
        template = read_po(f)
    for lang in LANGUAGES:
        if lang == "en":  # the source language: an empty translation shows the message itself
            continue
        po_path = LOCALE_DIR / lang / "LC_MESSAGES" / "messages.po"
        with po_path.open("rb") as f:
            catalog = read_po(f, locale=lang)
        catalog.update(template, no_fuzzy_matching=True)
        with po_path.open("wb") as f:
            write_po(f, catalog, width=100, sort_output=True, ignore_obsolete=True)
        print(f"{lang}: {sum(1 for m in catalog if m.id and not m.string)} untranslated")


if __name__ == "__main__":
    {"extract": extract, "update": update}[sys.argv[1]]()
