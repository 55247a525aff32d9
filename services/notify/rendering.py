"""Message templates (Jinja2, FR/NL/EN): the catalogue, sample contexts for previews, and rendering.

Each template is `templates/<language>/<name>.txt` whose first line is `Subject: …`. The HTML part of
an e-mail is `templates/<language>/<name>.html` when there is one, else the text wrapped in
`templates/layout.html` (escaped, paragraphs kept, links made clickable).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from pathlib import Path

from babel.dates import format_date
from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateNotFound, meta, pass_context
from markupsafe import Markup, escape

from .domain import LANGUAGES

DIRECTORY = Path(__file__).parent / "templates"

FOOTER = {
    "fr": "Message automatique du système du refuge.",
    "nl": "Automatisch bericht van het systeem van het opvanghuis.",
    "en": "Automatic message from the refuge's system.",
}

_STAY = {"stay_ref": "S-1a2b3c4d5e6f", "person_ref": "P-0a1b2c3d4e5f"}


@dataclass(frozen=True)
class TemplateInfo:
    name: str
    kind: str  # "staff" or "partner": partner templates only ever see the partner view of an event
    written_for: str  # the event type it is written for
    sample: dict = field(default_factory=dict)


CATALOGUE: dict[str, TemplateInfo] = {t.name: t for t in (
    TemplateInfo("person_admitted", "staff", "PersonAdmitted", {
        **_STAY, "request_ref": "R-0a1b2c3d4e5f", "place_ref": "PL-007", "place_kind": "emergency",
        "starts_on": "2026-02-02", "planned_end": "2026-05-02"}),
    TemplateInfo("person_waitlisted", "staff", "PersonWaitlisted", {
        "person_ref": _STAY["person_ref"], "request_ref": "R-0a1b2c3d4e5f", "place_kind": "cadal", "position": 3}),
    TemplateInfo("stay_ending", "staff", "StayEnding", {**_STAY, "planned_end": "2026-05-02", "days_before": 14,
                                                         "days_left": 13}),
    TemplateInfo("person_discharged", "staff", "PersonDischarged", {
        **_STAY, "place_ref": "PL-007", "destination": "own_housing", "planned": True, "safe": True}),
    TemplateInfo("place_freed", "staff", "PlaceFreed", {"place_ref": "PL-007", "place_kind": "emergency"}),
    TemplateInfo("place_offered", "staff", "PlaceOffered", {
        "offer_ref": "O-0a1b2c3d4e5f", "person_ref": _STAY["person_ref"], "place_ref": "PL-007",
        "place_kind": "emergency"}),
    TemplateInfo("request_assessed", "staff", "RequestAssessed", {
        "request_ref": "R-0a1b2c3d4e5f", "person_ref": _STAY["person_ref"], "decision": "refer", "track": "minor",
        "overridden": False, "follow_up_on": "2026-02-09"}),
    TemplateInfo("referral_status_changed", "staff", "ReferralStatusChanged", {
        "referral_ref": "RF-0a1b2c3d4e5f", "person_ref": _STAY["person_ref"], "partner_ref": "ORG-sample",
        "status": "declined", "previous_status": "pending", "reason_code": "no_capacity"}),
    TemplateInfo("delivery_failed", "staff", "NotificationFailed", {
        "failed_ref": "N-0a1b2c3d4e5f", "cause_event_type": "ReferralMade", "channel": "webhook",
        "recipient": "partner:ORG-sample", "attempts": 6, "reason_code": "http_410"}),
    TemplateInfo("digest", "staff", "", {"items": [
        {"summary": "Stay S-1a2b3c4d5e6f ends on 2026-05-02 (P-0a1b2c3d4e5f)", "link": None}]}),
    TemplateInfo("partner_referral_made", "partner", "ReferralMade", {
        "referral_ref": "RF-0a1b2c3d4e5f", "service_category": "legal", "person_ref": _STAY["person_ref"],
        "referral_link": "https://refuge.example/r/sample-signed-token"}),
    TemplateInfo("partner_referral_status", "partner", "ReferralStatusChanged", {
        "referral_ref": "RF-0a1b2c3d4e5f", "status": "revoked", "previous_status": "accepted",
        "reason_code": "consent_withdrawn", "person_ref": _STAY["person_ref"]}),
    TemplateInfo("partner_place_freed", "partner", "PlaceFreed", {"place_kind": "post_shelter"}),
    TemplateInfo("partner_consent_withdrawn", "partner", "ConsentWithdrawn", {"person_ref": _STAY["person_ref"]}),
    TemplateInfo("partner_erasure_requested", "partner", "ErasureRequested", {"person_ref": _STAY["person_ref"]}),
)}


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


_URL = re.compile(r"https?://[^\s<>\"]+")


def text_to_html(text: str) -> Markup:
    paragraphs = [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    out = []
    for paragraph in paragraphs:
        escaped = str(escape(paragraph))
        linked = _URL.sub(lambda m: f'<a href="{m.group(0)}">{m.group(0)}</a>', escaped)
        out.append("<p>" + linked.replace("\n", "<br>\n") + "</p>")
    return Markup("\n".join(out))


@pass_context
def _day(ctx, value) -> str:
    """An ISO date written out in the message's language."""
    if not value:
        return ""
    try:
        day = value if isinstance(value, date) else date.fromisoformat(str(value))
    except ValueError:
        return str(value)
    return format_date(day, format="long", locale=ctx.get("language", "en"))


class Renderer:
    def __init__(self, directory: Path = DIRECTORY):
        self.directory = directory
        self.text_env = Environment(loader=FileSystemLoader(directory), undefined=StrictUndefined,
                                    autoescape=False, keep_trailing_newline=True)
        self.html_env = Environment(loader=FileSystemLoader(directory), undefined=StrictUndefined, autoescape=True)
        for env in (self.text_env, self.html_env):
            env.filters["day"] = _day

    def exists(self, name: str, language: str) -> bool:
        return (self.directory / language / f"{name}.txt").is_file()

    def languages(self, name: str) -> list[str]:
        return [lang for lang in LANGUAGES if self.exists(name, lang)]

    def email(self, name: str, language: str, context: dict) -> RenderedEmail:
        context = {**context, "language": language}
        rendered = self.text_env.get_template(f"{language}/{name}.txt").render(**context)
        first, _, body = rendered.partition("\n")
        subject = first.removeprefix("Subject:").strip()
        text = body.strip("\n") + "\n"
        try:
            html = self.html_env.get_template(f"{language}/{name}.html").render(**context, subject=subject)
        except TemplateNotFound:
            html = self.html_env.get_template("layout.html").render(
                language=language, subject=subject, body=text_to_html(text), footer=FOOTER[language])
        return RenderedEmail(subject=subject, text=text + "\n-- \n" + FOOTER[language] + "\n", html=html)

    def subject(self, name: str, language: str, context: dict) -> str:
        return self.email(name, language, context).subject

    @cache  # noqa: B019  (one renderer per process; templates change only with a deploy)
    def variables(self, name: str) -> frozenset[str]:
        found: set[str] = set()
        for language in self.languages(name):
            source = (self.directory / language / f"{name}.txt").read_text()
            found |= meta.find_undeclared_variables(self.text_env.parse(source))
        return frozenset(found)

    def needs_referral_link(self, name: str) -> bool:
        return "referral_link" in self.variables(name)
