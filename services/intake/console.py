"""The staff console: server-rendered pages over the same handlers and queries as the API.

Plain HTML forms that work without JavaScript; /static/console.js only adds inline validation
and hides the form sections that do not apply. Every form carries a CSRF token; the session is
the signed staff token in the HttpOnly, SameSite=Strict `refuge_token` cookie.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from itsdangerous import BadSignature, SignatureExpired
from pydantic import ValidationError

from shared.auth import Role, Staff
from shared.events import REGISTRY, SUBSCRIPTIONS

from . import queries, words
from .accounts import StaffAccounts
from .access import (
    OFFER_ROLES,
    RETRY_ROLES,
    TOKEN_COOKIE,
    Csrf,
    clear_session_cookie,
    console_pages,
    other_pages,
    reads_case_files,
    scope_of,
    set_session_cookie,
)
from .handlers import Intake, Invalid, NotFound
from .i18n import LANGUAGE_COOKIE, LANGUAGES, Console, format_day
from .schemas import CONSENT_PURPOSES, ConsentIn, ErasureIn, FollowUpIn, Language, MatchQuery, NewRequest, OverrideIn
from .upstream import OtherServices, Refused, Unreachable

PLAIN_FIELDS = ("person_ref", "name", "date_of_birth", "stated_age", "language", "phone", "email", "preferred_contact",
                "channel", "caller", "caller_name", "caller_organisation", "situation", "urgency", "notes")
CADAL_FLAGS = tuple(words.CADAL_CHECKS)
# A reference of another service (N-…, O-…, P-…) before it goes into a URL of that service's API.
REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
TEMPLATE_NAME = re.compile(r"^[a-z0-9_]{1,60}$")
ENDING_WITHIN_DAYS = 30
PAGE_SIZE = 50
# What a message in notify's log can be caused by: the events notify reads, its own failure alerts, its summaries.
MESSAGE_CAUSES = sorted([name for name, contract in REGISTRY.items() if contract.producer in SUBSCRIPTIONS["notify"]]
                        + ["NotificationFailed", "Digest"])


class Words:
    """Codes, rules and events in the staff member's language, for the templates."""

    def __init__(self, gettext, lang: str):
        self._ = gettext
        self.lang = lang

    def day(self, value) -> str:
        return format_day(value, self.lang)

    def _label(self, table, code):
        return words.label(self._, table, code)

    def channel(self, code): return self._label(words.CHANNELS, code)
    def urgency(self, code): return self._label(words.URGENCIES, code)
    def decision(self, code): return self._label(words.DECISIONS, code)
    def track(self, code): return self._label(words.TRACKS, code)
    def place_kind(self, code): return self._label(words.PLACE_KINDS, code)
    def caller(self, code): return self._label(words.CALLERS, code)
    def situation(self, code): return self._label(words.SITUATIONS, code)
    def contact_method(self, code): return self._label(words.CONTACT_METHODS, code)
    def where_now(self, code): return self._label(words.WHERE_NOW, code)
    def counter(self, code): return self._label(words.COUNTERS, code)
    def place_kinds(self, code): return self._label(words.PLACE_KIND_HEADINGS, code)
    def place_state(self, code): return self._label(words.PLACE_STATES, code)
    def delivery_status(self, code): return self._label(words.DELIVERY_STATUSES, code)
    def delivery_channel(self, code): return self._label(words.DELIVERY_CHANNELS, code)
    def audience(self, code): return self._label(words.AUDIENCES, code)
    def attempt_outcome(self, code): return self._label(words.ATTEMPT_OUTCOMES, code)
    def template_kind(self, code): return self._label(words.TEMPLATE_KINDS, code)

    def needs(self, codes) -> str:
        return ", ".join(self._label(words.NEEDS, c) for c in codes)

    def reasons(self, codes) -> str:
        return ", ".join(self._label(words.MATCH_REASONS, c) for c in codes)

    def options(self, name: str) -> list[tuple[str, str]]:
        table = {"channels": words.CHANNELS, "callers": words.CALLERS, "situations": words.SITUATIONS,
                 "urgencies": words.URGENCIES, "needs": words.NEEDS, "contact_methods": words.CONTACT_METHODS,
                 "decisions": words.DECISIONS, "place_kinds": words.PLACE_KINDS,
                 "delivery_statuses": words.DELIVERY_STATUSES, "delivery_channels": words.DELIVERY_CHANNELS,
                 "audiences": words.AUDIENCES}[name]
        return [(code, self._(text)) for code, text in table.items()]

    def cadal_criteria(self) -> list[tuple[str, str]]:
        return [(code, self._(text)) for code, text in words.CADAL_CHECKS.items()]

    def field_error(self, field: str) -> str:
        return words.field_error(self._, field)

    def decision_sentence(self, r) -> str:
        return words.decision_sentence(self._, r.decision, r.track, r.place_kind, r.needs_review, self.day(r.follow_up_on))

    def rule(self, rule) -> str:
        return words.rule_sentence(self._, rule.model_dump() if hasattr(rule, "model_dump") else rule, self.day)

    def timeline(self, event_type: str, details: dict) -> str:
        return words.timeline_sentence(self._, event_type, details, self.day)


@dataclass
class Line:
    at: datetime
    source: str
    text: str


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def safe_next(value: str | None) -> str:
    """Only a path on this site: never an open redirect."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value \
            and all(ch.isprintable() for ch in value):
        return value
    return "/"


def secure_headers(response: Response, *, embeddable: bool = False) -> None:
    ancestors = "*" if embeddable else "'none'"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        f"base-uri 'none'; object-src 'none'; frame-ancestors {ancestors}")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    if not embeddable:
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Cache-Control"] = "no-store"


def form_to_request(form) -> dict:
    """The form's strings as NewRequest expects them: empty means not given."""
    data: dict = {}
    for name in PLAIN_FIELDS:
        value = (form.get(name) or "").strip()
        if value:
            data[name] = value
    data["safe_to_leave_message"] = form.get("safe_to_leave_message") == "on"
    data["needs"] = form.getlist("needs")
    if data.get("situation") == "asylum_reception":
        cadal = {flag: form.get(f"cadal_{flag}") == "on" for flag in CADAL_FLAGS}
        cadal["fedasil_designation_ref"] = (form.get("cadal_fedasil_designation_ref") or "").strip() or None
        data["cadal"] = cadal
    link = form.get("link")
    if link and link != "new":
        data["person_ref"] = link
    return data


def form_values(form) -> dict:
    values = {name: form.get(name) for name in form.keys()}
    values["needs"] = form.getlist("needs")
    return values


def field_of(loc: tuple) -> str:
    parts = [str(p) for p in loc if not isinstance(p, int)]
    if parts[:1] == ["cadal"] and len(parts) > 1:
        return "cadal_" + parts[1]
    return parts[0] if parts else "form"


def build_console(*, runtime, intake: Intake, console: Console, csrf: Csrf, services: OtherServices,
                  counters: queries.PublicCounters, staff_accounts: StaffAccounts, secure_cookies: bool,
                  throttle) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    def render(request: Request, template: str, *, status: int = 200, staff: Staff | None = None,
               lang: str | None = None, embeddable: bool = False, **context) -> HTMLResponse:
        lang = lang or console.language_of(request)
        new_cookies: dict[str, str] = {}
        # The public, embeddable page has no form and sets no cookie.
        token = None if embeddable else csrf.token_for(request, new_cookies)
        html = console.render(lang, template, staff=staff, pages=console_pages(staff), csrf_token=token,
                              here=safe_next(_here(request)),
                              t=Words(console.gettext(lang), lang), today=intake.today().isoformat(), **context)
        response = HTMLResponse(html, status_code=status)
        for value in new_cookies.values():
            csrf.set_nonce(response, value)
        secure_headers(response, embeddable=embeddable)
        return response

    def message(request: Request, status: int, heading: str, text: str, staff: Staff | None = None) -> HTMLResponse:
        return render(request, "message.html", status=status, staff=staff, heading=heading, text=text)

    def gettext(request: Request):
        return console.gettext(console.language_of(request))

    async def signed_in(request: Request) -> Staff | None:
        token = request.cookies.get(TOKEN_COOKIE)
        if not token:
            return None
        try:
            staff = runtime.signer.verify(token)
        except (BadSignature, SignatureExpired):
            return None
        if await staff_accounts.is_refused(staff.username):
            return None
        return staff

    async def guard(request: Request, page: str | None = None) -> Staff | Response:
        """The signed-in staff member, or the response refusing them. Pages over another service's
        API (`page`) are open to the roles that service serves, housing staff included; the rest of
        the console is about case files."""
        staff = await signed_in(request)
        if staff is None:
            expired = "&expired=1" if request.cookies.get(TOKEN_COOKIE) else ""
            return RedirectResponse(f"/login?next={quote(_here(request), safe='/')}{expired}", status_code=303)
        if page in other_pages(staff):
            return staff
        if not reads_case_files(staff):
            _ = gettext(request)
            if page is None and request.url.path == "/" and "places" in other_pages(staff):
                return redirect("/places")
            return message(request, 403, _("Not available for your role"),
                           _("Your role does not give access to case files."), staff)
        return staff

    async def guarded_form(request: Request, page: str | None = None):
        """The signed-in staff member and the submitted form, or the response refusing them."""
        staff = await guard(request, page)
        if isinstance(staff, Response):
            return staff, None
        form = await request.form()
        if not csrf.check(request, form.get("csrf_token")):
            _ = gettext(request)
            return message(request, 403, _("This form has expired"),
                           _("Go back, reload the page and submit the form again."), staff), None
        return staff, form

    def redirect(location: str) -> RedirectResponse:
        response = RedirectResponse(location, status_code=303)
        secure_headers(response)
        return response

    # --- sign-in, sign-out, language --------------------------------------------------------------

    @router.get("/login")
    async def login_page(request: Request, next: str = "/", expired: str = "") -> Response:
        if await signed_in(request) is not None:
            return redirect(safe_next(next))
        no_accounts = await staff_accounts.count() == 0
        return render(request, "login.html", next=safe_next(next), username="", error=None,
                      expired=bool(expired), no_accounts=no_accounts)

    @router.post("/login")
    async def login(request: Request) -> Response:
        form = await request.form()
        _ = gettext(request)
        next_page = safe_next(form.get("next"))
        if not csrf.check(request, form.get("csrf_token")):
            return message(request, 403, _("This form has expired"), _("Go back, reload the page and submit the form again."))
        username = str(form.get("username") or "")[:64]
        address = request.client.host if request.client else "unknown"
        wait = await throttle.retry_after(username, address)
        if wait is not None:
            response = render(request, "login.html", status=429, next=next_page, username=username, expired=False,
                              no_accounts=False, error=_("Too many refused sign-ins. Try again in a few minutes."))
            response.headers["Retry-After"] = str(wait)
            return response
        account = await staff_accounts.authenticate(username, str(form.get("password") or "")[:1000])
        if account is None:
            await throttle.failed(username, address)
            return render(request, "login.html", status=401, next=next_page, username=username, expired=False,
                          no_accounts=False, error=_("Unknown user name or wrong password."))
        await throttle.succeeded(username)
        token = runtime.signer.issue(account.username, account.roles)
        response = redirect(next_page)
        set_session_cookie(response, token, max_age=runtime.signer.max_age, secure=secure_cookies)
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        form = await request.form()
        if not csrf.check(request, form.get("csrf_token")):
            _ = gettext(request)
            return message(request, 403, _("This form has expired"), _("Go back, reload the page and submit the form again."))
        response = redirect("/login")
        clear_session_cookie(response, secure=secure_cookies)
        return response

    @router.post("/language")
    async def choose_language(request: Request) -> Response:
        form = await request.form()
        if not csrf.check(request, form.get("csrf_token")):
            _ = gettext(request)
            return message(request, 403, _("This form has expired"), _("Go back, reload the page and submit the form again."))
        response = redirect(safe_next(form.get("next")))
        lang = form.get("lang")
        if lang in LANGUAGES:
            response.set_cookie(LANGUAGE_COOKIE, lang, max_age=365 * 24 * 3600, samesite="lax", secure=secure_cookies,
                                httponly=True, path="/")
        return response

    # --- queue, search, stays ------------------------------------------------------------------

    @router.get("/")
    async def queue_page(request: Request) -> Response:
        staff = await guard(request)
        if isinstance(staff, Response):
            return staff
        async with runtime.sessions() as session:
            queue = await queries.queue(session, actor=staff.username, vault=intake.vault, scope=scope_of(staff), today=intake.today(), zone=intake.zone)
        return render(request, "queue.html", staff=staff, active="queue", queue=queue)

    @router.get("/search")
    async def search_page(request: Request, q: str = "") -> Response:
        staff = await guard(request)
        if isinstance(staff, Response):
            return staff
        q = q.strip()
        error, results = None, []
        if q:
            if not 2 <= len(q) <= 100 or not q.isprintable():
                error = gettext(request)("Type at least two characters.")
            else:
                async with runtime.sessions() as session:
                    results = await queries.search(session, q, actor=staff.username, vault=intake.vault, scope=scope_of(staff), today=intake.today())
        return render(request, "search.html", staff=staff, active="search", q=q, results=results, error=error,
                      status=422 if error else 200)

    @router.get("/stays")
    async def stays_page(request: Request) -> Response:
        staff = await guard(request)
        if isinstance(staff, Response):
            return staff
        try:
            stays = await services.open_stays(request.cookies[TOKEN_COOKIE])
        except Unreachable:
            stays = None
        if stays is not None:
            async with runtime.sessions() as session:
                names = await queries.names_for(session, [s["person_ref"] for s in stays], vault=intake.vault, scope=scope_of(staff))
            stays = [{**s, "name": names.get(s["person_ref"])} for s in stays]
        return render(request, "stays.html", staff=staff, active="stays", stays=stays)

    # --- places: housing's board, stays ending soon, waiting list and offers -----------------------

    def refused(request: Request, staff: Staff, exc: Refused, not_found: str) -> HTMLResponse:
        """Another service's 403 or 404, as the console says it for its own pages."""
        _ = gettext(request)
        if exc.status == 403:
            return message(request, 403, _("Not available for your role"),
                           _("Your role does not give access to this page."), staff)
        return message(request, 404, _("Not found"), not_found, staff)

    async def places(request: Request, staff: Staff, *, status: int = 200, problem: str | None = None,
                     detail: str = "") -> Response:
        token = request.cookies[TOKEN_COOKIE]
        try:
            board, ending, waiting, offers = await together(
                services.board(token), services.stays_ending(token, ENDING_WITHIN_DAYS), services.waitlist(token),
                services.offers(token))
        except Refused as exc:
            return refused(request, staff, exc, gettext(request)("There is no such page."))
        except Unreachable:
            return render(request, "places.html", status=status, staff=staff, active="places",
                          board=None, problem=problem)
        placed = [p for f in board["flats"] for p in f["places"]]
        refs = {p["person_ref"] for p in placed if p.get("person_ref")} | {s["person_ref"] for s in ending} \
            | {w["person_ref"] for w in waiting} | {o["person_ref"] for o in offers}
        async with runtime.sessions() as session:
            names = await queries.names_for(session, sorted(refs), vault=intake.vault, scope=scope_of(staff))
        # Housing gives a flat's address only to the roles that may know it; otherwise it is null.
        addresses = {f["code"]: f["address"] for f in board["flats"] if f.get("address")}
        kinds = [{"kind": t["place_kind"], "counts": t,
                  "places": [p for p in placed if p["kind"] == t["place_kind"] and p["state"] != "vacant"],
                  "offers": [o for o in offers if o["place_kind"] == t["place_kind"]],
                  "line": [w for w in waiting if w["place_kind"] == t["place_kind"] and w["position"] is not None]}
                 for t in board["totals"]]
        _ = gettext(request)
        saved = {"accepted": _("Offer accepted: the stay has started."),
                 "refused": _("Offer refused: the place goes to the next person waiting.")}.get(
            request.query_params.get("saved", ""))
        return render(request, "places.html", status=status, staff=staff, active="places", board=board, kinds=kinds,
                      ending=ending, ending_days=ENDING_WITHIN_DAYS, names=names, addresses=addresses, saved=saved,
                      problem=problem, detail=detail, answers_offers=bool(staff.roles & OFFER_ROLES))

    @router.get("/places")
    async def places_page(request: Request) -> Response:
        staff = await guard(request, "places")
        if isinstance(staff, Response):
            return staff
        return await places(request, staff)

    async def answer_offer(request: Request, offer_ref: str, answer: str) -> Response:
        staff, form = await guarded_form(request, "places")
        if form is None:
            return staff
        _ = gettext(request)
        if not REF.match(offer_ref):
            return message(request, 404, _("Not found"), _("There is no such offer."), staff)
        reason = (form.get("reason") or "").strip()
        if len(reason) > 1000:
            return await places(request, staff, status=422, problem=_("The reason is limited to 1000 characters."))
        token = request.cookies[TOKEN_COOKIE]
        try:
            if answer == "accepted":
                await services.accept_offer(token, offer_ref)
            else:
                await services.refuse_offer(token, offer_ref, reason or None)
        except Refused as exc:
            if exc.status == 409:
                return await places(request, staff, status=409, detail=exc.detail, problem=_(
                    "Housing did not record this answer: the offer is no longer open, or the person still has "
                    "a stay elsewhere that must end first."))
            return refused(request, staff, exc, _("There is no such offer."))
        except Unreachable:
            return await places(request, staff, status=503, problem=_(
                "Housing cannot be reached right now; nothing was recorded. Try again in a moment."))
        return redirect(f"/places?saved={answer}")

    @router.post("/places/offers/{offer_ref}/accept")
    async def accept_offer(request: Request, offer_ref: str) -> Response:
        return await answer_offer(request, offer_ref, "accepted")

    @router.post("/places/offers/{offer_ref}/refuse")
    async def refuse_offer(request: Request, offer_ref: str) -> Response:
        return await answer_offer(request, offer_ref, "refused")

    # --- notifications: notify's delivery log and its templates ------------------------------------

    @router.get("/notifications")
    async def notifications_page(request: Request) -> Response:
        staff = await guard(request, "notifications")
        if isinstance(staff, Response):
            return staff
        _ = gettext(request)
        query = request.query_params
        choices = {"status": words.DELIVERY_STATUSES, "channel": words.DELIVERY_CHANNELS,
                   "audience": words.AUDIENCES, "event_type": MESSAGE_CAUSES}
        # Only values notify knows go on: anything else is left out, as if not chosen.
        filters = {name: query[name] for name, known in choices.items() if query.get(name) in known}
        error = None
        person_ref = query.get("person_ref", "").strip()
        if person_ref:
            if REF.match(person_ref):
                filters["person_ref"] = person_ref
            else:
                error = _("A case file reference looks like P-0a1b2c3d4e5f.")
        page = int(query["page"]) if re.fullmatch(r"[1-9][0-9]{0,4}", query.get("page", "")) else 1
        deliveries, total = None, 0
        if error is None:
            try:
                deliveries, total = await services.deliveries(request.cookies[TOKEN_COOKIE], filters, limit=PAGE_SIZE,
                                                              offset=(page - 1) * PAGE_SIZE)
            except Refused as exc:
                return refused(request, staff, exc, _("There is no such page."))
            except Unreachable:
                deliveries = None
        shown = {**filters, "person_ref": person_ref}

        def page_link(number: int) -> str:
            return "/notifications?" + urlencode({**{k: v for k, v in shown.items() if v}, "page": number})

        return render(request, "notifications.html", status=422 if error else 200, staff=staff, active="notifications",
                      deliveries=deliveries, total=total, page=page, page_size=PAGE_SIZE, filters=shown, error=error,
                      causes=MESSAGE_CAUSES,
                      previous_page=page_link(page - 1) if page > 1 else None,
                      next_page=page_link(page + 1) if page * PAGE_SIZE < total else None)

    @router.get("/notifications/templates")
    async def templates_page(request: Request) -> Response:
        return await templates(request, None)

    @router.get("/notifications/templates/{name}")
    async def template_page(request: Request, name: str) -> Response:
        return await templates(request, name)

    async def templates(request: Request, name: str | None) -> Response:
        staff = await guard(request, "notifications")
        if isinstance(staff, Response):
            return staff
        _ = gettext(request)
        token = request.cookies[TOKEN_COOKIE]
        if name is not None and not TEMPLATE_NAME.match(name):
            return message(request, 404, _("Not found"), _("There is no such template."), staff)
        try:
            listed = await services.templates(token)
            previews = None
            if name is not None:
                previews = await together(*(services.preview(token, name, lang) for lang in LANGUAGES))
                for preview in previews:
                    if preview.get("webhook_body") is not None:
                        preview["webhook_json"] = json.dumps(preview["webhook_body"], indent=2, ensure_ascii=False)
        except Refused as exc:
            return refused(request, staff, exc, _("There is no such template."))
        except Unreachable:
            listed, previews = None, None
        return render(request, "templates.html", staff=staff, active="notifications", templates=listed, name=name,
                      previews=previews)

    async def delivery_page(request: Request, staff: Staff, notification_ref: str, *, status: int = 200,
                            problem: str | None = None) -> Response:
        _ = gettext(request)
        if not REF.match(notification_ref):
            return message(request, 404, _("Not found"), _("There is no such message."), staff)
        try:
            delivery = await services.delivery(request.cookies[TOKEN_COOKIE], notification_ref)
        except Refused as exc:
            return refused(request, staff, exc, _("There is no such message."))
        except Unreachable:
            delivery = None
        saved = _("Sent again: the message waits for its next attempt.") \
            if request.query_params.get("saved") == "retried" else None
        return render(request, "notification.html", status=status, staff=staff, active="notifications",
                      notification_ref=notification_ref, delivery=delivery, saved=saved, problem=problem,
                      retries=bool(staff.roles & RETRY_ROLES))

    @router.get("/notifications/{notification_ref}")
    async def notification_page(request: Request, notification_ref: str) -> Response:
        staff = await guard(request, "notifications")
        if isinstance(staff, Response):
            return staff
        return await delivery_page(request, staff, notification_ref)

    @router.post("/notifications/{notification_ref}/retry")
    async def retry_notification(request: Request, notification_ref: str) -> Response:
        staff, form = await guarded_form(request, "notifications")
        if form is None:
            return staff
        _ = gettext(request)
        if not REF.match(notification_ref):
            return message(request, 404, _("Not found"), _("There is no such message."), staff)
        try:
            await services.retry_delivery(request.cookies[TOKEN_COOKIE], notification_ref)
        except Refused as exc:
            if exc.status == 409:
                return await delivery_page(request, staff, notification_ref, status=409,
                                           problem=_("Only a failed message can be sent again; this one is not failed."))
            return refused(request, staff, exc, _("There is no such message."))
        except Unreachable:
            return await delivery_page(request, staff, notification_ref, status=503, problem=_(
                "Notify cannot be reached right now; the message was not sent again. Try again in a moment."))
        return redirect(f"/notifications/{notification_ref}?saved=retried")

    # --- recording a request ---------------------------------------------------------------------

    def request_form(request, staff, *, values=None, errors=None, matches=None, status=200) -> HTMLResponse:
        return render(request, "request_form.html", status=status, staff=staff, active="new", values=values or {},
                      errors=errors or {}, matches=matches, person_languages=[lang.value for lang in Language])

    @router.get("/requests/new")
    async def new_request_page(request: Request) -> Response:
        staff = await guard(request)
        if isinstance(staff, Response):
            return staff
        return request_form(request, staff)

    @router.post("/requests/new")
    async def record_request(request: Request) -> Response:
        staff, form = await guarded_form(request)
        if form is None:
            return staff
        t = Words(gettext(request), console.language_of(request))
        values = form_values(form)
        try:
            data = NewRequest.model_validate(form_to_request(form))
        except ValidationError as exc:
            errors: dict[str, str] = {}
            for err in exc.errors():
                field = field_of(err["loc"])
                errors.setdefault(field, t.field_error(field))
            return request_form(request, staff, values=values, errors=errors, status=422)
        if form.get("link") is None:
            async with runtime.sessions() as session:
                matches = await queries.likely_matches(
                    session, MatchQuery(name=data.name, date_of_birth=data.date_of_birth, phone=data.phone,
                                        email=data.email), actor=staff.username, vault=intake.vault, scope=scope_of(staff))
            if matches:
                return request_form(request, staff, values=values, matches=matches)
        try:
            recorded = await intake.record_request(data, actor=staff.username)
        except Invalid as exc:
            return request_form(request, staff, values=values, errors={exc.field: t.field_error(exc.field)}, status=422)
        person_ref, request_ref = recorded.person.person_ref, recorded.request.request_ref
        return redirect(f"/case-files/{person_ref}?recorded={request_ref}#{request_ref}")

    # --- case files -------------------------------------------------------------------------------

    async def case_file(request: Request, staff: Staff, person_ref: str, *, status: int = 200,
                        form_errors: dict | None = None, open_form: str | None = None) -> Response:
        _ = gettext(request)
        t = Words(_, console.language_of(request))
        try:
            async with runtime.sessions() as session:
                case = await queries.get_case_file(session, person_ref, actor=staff.username, vault=intake.vault, scope=scope_of(staff), today=intake.today())
        except NotFound:
            return message(request, 404, _("Not found"), _("There is no such case file."), staff)
        try:
            stays = [s for s in await services.open_stays(request.cookies[TOKEN_COOKIE], person_ref)
                     if s["person_ref"] == person_ref]
        except Unreachable:
            stays = None
        lines = []
        for r in case.requests:
            lines.append(Line(r.received_at, "intake", _("Request %(ref)s received (%(channel)s), recorded by %(who)s.") % {
                "ref": r.request_ref, "channel": t.channel(r.channel), "who": r.recorded_by}))
            for h in r.history:
                if h.decided_by == "rules":
                    text = _("Assessed by the rules: %(decision)s, %(track)s.") % {
                        "decision": t.decision(h.decision), "track": t.track(h.track)}
                else:
                    text = _("Decision by %(who)s: %(decision)s, %(track)s. Reason: %(reason)s") % {
                        "who": h.decided_by, "decision": t.decision(h.decision), "track": t.track(h.track),
                        "reason": h.override_reason or ""}
                lines.append(Line(h.decided_at, "intake", text))
        for f in case.follow_ups:
            text = _("Followed up by %(who)s.") % {"who": f.done_by}
            lines.append(Line(f.done_at, "intake", f"{text} {f.note or ''}".strip()))
        for e in case.timeline:
            lines.append(Line(e.occurred_at, "services", t.timeline(e.event_type, e.details)))
        lines.sort(key=lambda line: _aware(line.at))
        try:
            partners = await services.partners(request.cookies[TOKEN_COOKIE])
        except Unreachable:
            partners = None
        partner_names = {p["partner_ref"]: p["name"] for p in partners or []}
        saved = {"override": _("Decision recorded."), "follow-up": _("Follow-up recorded."),
                 "consent": _("Consent recorded."), "withdrawn": _("Consent withdrawn.")}.get(
            request.query_params.get("saved", ""))
        return render(request, "case_file.html", status=status, staff=staff, case=case, stays=stays, timeline=lines,
                      recorded=request.query_params.get("recorded", "")[:32], saved=saved,
                      form_errors=form_errors or {}, open_form=open_form, partners=partners,
                      partner_names=partner_names, purposes=CONSENT_PURPOSES)

    @router.get("/case-files/{person_ref}")
    async def case_file_page(request: Request, person_ref: str) -> Response:
        staff = await guard(request)
        if isinstance(staff, Response):
            return staff
        return await case_file(request, staff, person_ref)

    @router.get("/requests/{request_ref}")
    async def request_page(request: Request, request_ref: str) -> Response:
        staff = await guard(request)
        if isinstance(staff, Response):
            return staff
        try:
            async with runtime.sessions() as session:
                found = await queries.get_request(session, request_ref, actor=staff.username, vault=intake.vault, scope=scope_of(staff))
        except NotFound:
            _ = gettext(request)
            return message(request, 404, _("Not found"), _("There is no such request."), staff)
        return redirect(f"/case-files/{found.person_ref}#{found.request_ref}")

    async def act_on_request(request: Request, request_ref: str, kind: str, schema, action) -> Response:
        staff, form = await guarded_form(request)
        if form is None:
            return staff
        t = Words(gettext(request), console.language_of(request))
        try:
            async with runtime.sessions() as session:
                person_ref = (await queries.get_request(session, request_ref, actor=staff.username, vault=intake.vault, scope=scope_of(staff))).person_ref
        except NotFound:
            _ = gettext(request)
            return message(request, 404, _("Not found"), _("There is no such request."), staff)
        key = f"{request_ref}:{kind}"
        try:
            data = schema.model_validate({k: v for k, v in form.items() if k != "csrf_token" and v != ""})
            async with runtime.uow() as uow:
                await action(uow, request_ref, data, actor=staff.username)
        except ValidationError as exc:
            errors = {field_of(e["loc"]): t.field_error(field_of(e["loc"])) for e in exc.errors()}
            return await case_file(request, staff, person_ref, status=422, form_errors={key: errors}, open_form=key)
        except Invalid as exc:
            reason = words.REFUSALS.get(exc.reason)
            text = gettext(request)(reason) if reason else t.field_error(exc.field)
            return await case_file(request, staff, person_ref, status=422, form_errors={key: {exc.field: text}},
                                   open_form=key)
        return redirect(f"/case-files/{person_ref}?saved={kind}#{request_ref}")

    @router.post("/requests/{request_ref}/override")
    async def override(request: Request, request_ref: str) -> Response:
        return await act_on_request(request, request_ref, "override", OverrideIn, intake.override)

    @router.post("/requests/{request_ref}/follow-up")
    async def follow_up(request: Request, request_ref: str) -> Response:
        return await act_on_request(request, request_ref, "follow-up", FollowUpIn, intake.record_follow_up)

    @router.post("/case-files/{person_ref}/consents")
    async def give_consent(request: Request, person_ref: str) -> Response:
        staff, form = await guarded_form(request)
        if form is None:
            return staff
        t = Words(gettext(request), console.language_of(request))
        try:
            data = ConsentIn.model_validate({k: v for k, v in form.items() if k != "csrf_token" and v != ""})
            async with runtime.sessions() as session:
                await queries.check_visible(session, scope_of(staff), person_ref)
            async with runtime.uow() as uow:
                await intake.give_consent(uow, person_ref, data, actor=staff.username)
        except ValidationError as exc:
            errors = {field_of(e["loc"]): t.field_error(field_of(e["loc"])) for e in exc.errors()}
            return await case_file(request, staff, person_ref, status=422, form_errors={"consent": errors},
                                   open_form="consent")
        except Invalid as exc:
            return await case_file(request, staff, person_ref, status=422,
                                   form_errors={"consent": {exc.field: t.field_error(exc.field)}}, open_form="consent")
        except NotFound:
            _ = gettext(request)
            return message(request, 404, _("Not found"), _("There is no such case file."), staff)
        return redirect(f"/case-files/{person_ref}?saved=consent#consents")

    @router.post("/case-files/{person_ref}/consents/{consent_ref}/withdraw")
    async def withdraw_consent(request: Request, person_ref: str, consent_ref: str) -> Response:
        staff, form = await guarded_form(request)
        if form is None:
            return staff
        try:
            async with runtime.sessions() as session:
                await queries.check_visible(session, scope_of(staff), person_ref)
            async with runtime.uow() as uow:
                await intake.withdraw_consent(uow, person_ref, consent_ref, actor=staff.username)
        except NotFound:
            _ = gettext(request)
            return message(request, 404, _("Not found"), _("There is no such consent."), staff)
        return redirect(f"/case-files/{person_ref}?saved=withdrawn#consents")

    @router.post("/case-files/{person_ref}/erasure")
    async def request_erasure(request: Request, person_ref: str) -> Response:
        staff, form = await guarded_form(request)
        if form is None:
            return staff
        _ = gettext(request)
        if not staff.roles & {Role.social_coordinator, Role.administrator}:
            return message(request, 403, _("Not available for your role"),
                           _("Only a social coordinator or an administrator may erase a case file."), staff)
        t = Words(_, console.language_of(request))
        try:
            data = ErasureIn.model_validate({"reason": form.get("reason", "")})
            async with runtime.uow() as uow:
                erasure = await intake.request_erasure(uow, person_ref, data, actor=staff.username)
        except ValidationError:
            return await case_file(request, staff, person_ref, status=422,
                                   form_errors={"erasure": {"reason": t.field_error("reason")}}, open_form="erasure")
        except NotFound:
            return message(request, 404, _("Not found"), _("There is no such case file."), staff)
        return redirect(f"/erasures/{erasure.erasure_ref}")

    @router.get("/erasures/{erasure_ref}")
    async def erasure_page(request: Request, erasure_ref: str) -> Response:
        staff = await guard(request)
        if isinstance(staff, Response):
            return staff
        _ = gettext(request)
        try:
            if not staff.roles & {Role.social_coordinator, Role.administrator}:
                raise NotFound(erasure_ref)
            async with runtime.sessions() as session:
                erasure = await queries.get_erasure(session, erasure_ref)
        except NotFound:
            return message(request, 404, _("Not found"), _("There is no such erasure."), staff)
        return render(request, "erasure.html", staff=staff, erasure=erasure)

    # --- public counters, embeddable ----------------------------------------------------------------

    @router.get("/counters")
    async def counters_page(request: Request, lang: str = "") -> Response:
        lang = lang if lang in LANGUAGES else console.language_of(request)
        _ = console.gettext(lang)
        t = Words(_, lang)
        shown = []
        for c in (await counters.get()).counters:
            text = _("fewer than 5") if c.at_least == 0 else _("%(n)s or more") % {"n": c.at_least}
            shown.append({"key": c.key, "text": text, "label": t.counter(c.key)})
        response = render(request, "counters.html", lang=lang, embeddable=True, counters=shown)
        response.headers["Cache-Control"] = "public, max-age=60"
        return response

    return router


async def together(*calls) -> list:
    """Calls to other services at once; the first that fails stands for all (the others still finish)."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


def _here(request: Request) -> str:
    path = request.url.path
    return f"{path}?{request.url.query}" if request.url.query else path
