"""Intake's HTTP API under /api: thin routes over the handlers and queries, one for every console action."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.auth import Role, Staff, bearer_token
from shared.messaging import ServiceRuntime

from . import handlers, queries
from .accounts import StaffAccounts
from .access import scope_of, active_staff_dependency, clear_session_cookie, reads_case_files, set_session_cookie
from .handlers import Intake, Invalid, NotFound
from .throttle import SignInThrottle
from .upstream import OtherServices
from .schemas import (
    CaseFileOut, CaseFileSummary, ConsentIn, ConsentOut, CountersOut, ErasureIn, ErasureOut, FollowUpIn, FollowUpOut, MatchOut, MatchQuery, NewRequest, OverrideIn,
    QueueOut, RequestOut, SessionOut, SignIn, TimelineOut, ValidationErrorOut,
)

_ERROR = {"content": {"application/json": {"schema": {"type": "object", "properties": {"detail": {}}}}}}
NOT_FOUND = {404: {"description": "no such thing, or not yours to see", **_ERROR}}
BAD_INPUT = {422: {"description": "bad input: each refused field with the reason", "model": ValidationErrorOut}}
SIGNED_IN = {401: {"description": "sign-in required or expired", **_ERROR},
             403: {"description": "not allowed for your role", **_ERROR}, **BAD_INPUT}


def _links(**targets: str) -> dict:
    """OpenAPI links: where a response's references lead (clients and fuzzers follow them)."""
    return {name: {"operationId": operation, "parameters": {param: f"$response.body#/{param}"}}
            for name, (operation, param) in ((n, t.split(":")) for n, t in targets.items())}


RECORDED_LINKS = _links(GetRequest="get_request:request_ref", GetCaseFile="get_case_file:person_ref",
                        Override="override:request_ref", FollowUp="follow_up:request_ref",
                        Timeline="timeline:person_ref")


def install_error_handlers(app) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc: StarletteHTTPException) -> JSONResponse:
        # A body that is not even JSON is bad input like any other: 422, naming the body.
        if exc.status_code == 400 and request.url.path.startswith("/api/"):
            return JSONResponse({"detail": [{"field": "body", "reason": "could not be parsed", "type": "json_invalid"}]},
                                status_code=422)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(NotFound)
    async def not_found(_request, _exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": "not found"}, status_code=404)

    @app.exception_handler(Invalid)
    async def invalid(_request, exc: Invalid) -> JSONResponse:
        return JSONResponse({"detail": [{"field": exc.field, "reason": exc.reason, "type": "value_error"}]},
                            status_code=422)


def build_router(runtime: ServiceRuntime, intake: Intake, counters: queries.PublicCounters, staff_accounts: StaffAccounts,
                 *, secure_cookies: bool, throttle: SignInThrottle, services: OtherServices) -> APIRouter:
    router = APIRouter(prefix="/api")
    active_staff = active_staff_dependency(runtime, staff_accounts)

    async def case_worker(staff: Staff = Depends(active_staff)) -> Staff:
        if not reads_case_files(staff):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "not allowed for your role")
        return staff

    async def case_reader(staff: Staff = Depends(active_staff)) -> Staff:
        # Someone whose role does not cover case files is told nothing exists (404, not 403).
        if not reads_case_files(staff):
            raise NotFound("case files")
        return staff

    async def erasure_officer(staff: Staff = Depends(case_reader)) -> Staff:
        # Erasure and the person's full copy are for the social coordinator and the administrator.
        if not staff.roles & {Role.social_coordinator, Role.administrator}:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "not allowed for your role")
        return staff

    async def visible_person(staff: Staff, person_ref: str) -> None:
        async with runtime.sessions() as session:
            await handlers.case_file(session, person_ref)
            await queries.check_visible(session, scope_of(staff), person_ref)

    async def visible_request(staff: Staff, request_ref: str) -> None:
        async with runtime.sessions() as session:
            await queries.get_request(session, request_ref, actor=staff.username, vault=intake.vault,
                                      scope=scope_of(staff))

    # --- sign-in -------------------------------------------------------------------------

    @router.post("/session", response_model=SessionOut, tags=["sign-in"], operation_id="sign_in",
                 responses={401: {"description": "unknown user name or wrong password", **_ERROR},
                            429: {"description": "too many refused sign-ins: wait `Retry-After` seconds",
                                  "headers": {"Retry-After": {"schema": {"type": "integer"}}}, **_ERROR},
                            **BAD_INPUT})
    async def sign_in(body: SignIn, request: Request, response: Response) -> SessionOut:
        """Sign in; returns the token and sets it as the `refuge_token` cookie the console uses. Too many
        refused attempts for a user name or from an address are answered 429 with Retry-After."""
        address = request.client.host if request.client else "unknown"
        wait = await throttle.retry_after(body.username, address)
        if wait is not None:
            raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, "too many refused sign-ins; try again later",
                                headers={"Retry-After": str(wait)})
        account = await staff_accounts.authenticate(body.username, body.password)
        if account is None:
            await throttle.failed(body.username, address)
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "unknown user name or wrong password")
        await throttle.succeeded(body.username)
        token = runtime.signer.issue(account.username, account.roles)
        set_session_cookie(response, token, max_age=runtime.signer.max_age, secure=secure_cookies)
        return SessionOut(token=token, expires_in=runtime.signer.max_age, username=account.username,
                          roles=list(account.roles))

    @router.delete("/session", status_code=status.HTTP_204_NO_CONTENT, tags=["sign-in"], operation_id="sign_out")
    async def sign_out(response: Response) -> Response:
        response.status_code = status.HTTP_204_NO_CONTENT
        clear_session_cookie(response, secure=secure_cookies)
        return response

    # --- public ----------------------------------------------------------------------------

    @router.get("/public/counters", response_model=CountersOut, tags=["public"], operation_id="public_counters")
    async def public_counters(response: Response) -> CountersOut:
        """The three counters the refuge publishes, coarsened so that no one can be singled out."""
        response.headers["Access-Control-Allow-Origin"] = "*"
        response.headers["Cache-Control"] = "public, max-age=60"
        return await counters.get()

    # --- requests --------------------------------------------------------------------------

    @router.post("/requests", status_code=status.HTTP_201_CREATED, response_model=RequestOut, tags=["requests"],
                 operation_id="record_request",
                 responses={**SIGNED_IN, 201: {"description": "recorded and assessed", "links": RECORDED_LINKS}})
    async def record_request(body: NewRequest, staff: Staff = Depends(case_worker)) -> RequestOut:
        """Record a call for help; the rules assess it at once and the decision is returned with its reasons."""
        recorded = await intake.record_request(body, actor=staff.username)
        return queries.request_out(recorded.request, [recorded.assessment])

    @router.get("/requests/{request_ref}", response_model=RequestOut, tags=["requests"],
                operation_id="get_request",
                responses={**SIGNED_IN, **NOT_FOUND})
    async def get_request(request_ref: str, staff: Staff = Depends(case_reader)) -> RequestOut:
        async with runtime.sessions() as session:
            return await queries.get_request(session, request_ref, actor=staff.username, vault=intake.vault, scope=scope_of(staff))

    @router.post("/requests/{request_ref}/override", response_model=RequestOut, tags=["requests"],
                 operation_id="override",
                 responses={**SIGNED_IN, **NOT_FOUND})
    async def override(request_ref: str, body: OverrideIn, staff: Staff = Depends(case_reader)) -> RequestOut:
        """A staff decision replacing the rules' one; records who, when and why."""
        await visible_request(staff, request_ref)
        async with runtime.uow() as uow:
            await intake.override(uow, request_ref, body, actor=staff.username)
        async with runtime.sessions() as session:
            return await queries.get_request(session, request_ref, actor=staff.username, vault=intake.vault, scope=scope_of(staff))

    @router.post("/requests/{request_ref}/follow-up", response_model=FollowUpOut, tags=["requests"],
                 operation_id="follow_up",
                 responses={**SIGNED_IN, **NOT_FOUND})
    async def follow_up(request_ref: str, body: FollowUpIn, staff: Staff = Depends(case_reader)) -> FollowUpOut:
        """Record that the person was followed up, and when to follow up next (if ever)."""
        await visible_request(staff, request_ref)
        async with runtime.uow() as uow:
            done = await intake.record_follow_up(uow, request_ref, body, actor=staff.username)
        return FollowUpOut(request_ref=done.request_ref, done_at=done.done_at, done_by=done.done_by, note=body.note,
                           next_follow_up_on=done.next_follow_up_on)

    @router.get("/queue", response_model=QueueOut, tags=["requests"], operation_id="today_queue",
                responses={**SIGNED_IN})
    async def today_queue(staff: Staff = Depends(case_worker)) -> QueueOut:
        """Today's new requests, and those waiting for a staff decision or a follow-up."""
        async with runtime.sessions() as session:
            return await queries.queue(session, actor=staff.username, vault=intake.vault, scope=scope_of(staff), today=intake.today(), zone=intake.zone)

    # --- case files ------------------------------------------------------------------------

    @router.get("/case-files", response_model=list[CaseFileSummary], tags=["case files"], operation_id="search_case_files",
                responses={**SIGNED_IN})
    async def search(q: str = Query(min_length=2, max_length=100, pattern=r"^[^\x00-\x1f\x7f]*$",
                                    description="part of a name, or a P-… / R-… reference"),
                     staff: Staff = Depends(case_worker)) -> list[CaseFileSummary]:
        async with runtime.sessions() as session:
            return await queries.search(session, q, actor=staff.username, vault=intake.vault, scope=scope_of(staff), today=intake.today())

    @router.post("/case-files/matches", response_model=list[MatchOut], tags=["case files"], operation_id="likely_matches",
                responses={**SIGNED_IN})
    async def matches(body: MatchQuery, staff: Staff = Depends(case_worker)) -> list[MatchOut]:
        """Case files that probably belong to the caller; link one by giving its person_ref when recording."""
        async with runtime.sessions() as session:
            return await queries.likely_matches(session, body, actor=staff.username, vault=intake.vault, scope=scope_of(staff))

    @router.get("/case-files/{person_ref}", response_model=CaseFileOut, tags=["case files"],
                operation_id="get_case_file",
                responses={**SIGNED_IN, **NOT_FOUND})
    async def case_file(person_ref: str, staff: Staff = Depends(case_reader)) -> CaseFileOut:
        async with runtime.sessions() as session:
            return await queries.get_case_file(session, person_ref, actor=staff.username, vault=intake.vault, scope=scope_of(staff), today=intake.today())

    @router.get("/people/{person_ref}/timeline", response_model=list[TimelineOut], tags=["case files"],
                operation_id="timeline",
                responses={**SIGNED_IN, **NOT_FOUND})
    async def timeline(person_ref: str, staff: Staff = Depends(case_reader)) -> list[TimelineOut]:
        async with runtime.sessions() as session:
            return await queries.get_timeline(session, person_ref, actor=staff.username, scope=scope_of(staff))

    # --- consent (rule 8) ------------------------------------------------------------------

    @router.post("/case-files/{person_ref}/consents", status_code=status.HTTP_201_CREATED, response_model=ConsentOut,
                 tags=["consent"], operation_id="give_consent", responses={**SIGNED_IN, **NOT_FOUND})
    async def give_consent(person_ref: str, body: ConsentIn, staff: Staff = Depends(case_reader)) -> ConsentOut:
        """Record that the person agrees a partner may receive their data for a purpose (optionally until a day)."""
        await visible_person(staff, person_ref)
        async with runtime.uow() as uow:
            consent = await intake.give_consent(uow, person_ref, body, actor=staff.username)
        return queries.consent_out(consent, intake.today())

    @router.get("/case-files/{person_ref}/consents", response_model=list[ConsentOut], tags=["consent"],
                operation_id="list_consents", responses={**SIGNED_IN, **NOT_FOUND})
    async def list_consents(person_ref: str, staff: Staff = Depends(case_reader)) -> list[ConsentOut]:
        async with runtime.sessions() as session:
            await handlers.case_file(session, person_ref)
            await queries.check_visible(session, scope_of(staff), person_ref)
            return await queries.consents_of(session, person_ref, today=intake.today())

    @router.post("/case-files/{person_ref}/consents/{consent_ref}/withdraw", response_model=ConsentOut,
                 tags=["consent"], operation_id="withdraw_consent", responses={**SIGNED_IN, **NOT_FOUND})
    async def withdraw_consent(person_ref: str, consent_ref: str, staff: Staff = Depends(case_reader)) -> ConsentOut:
        """Withdraw a consent: referrals and notify stop sharing with that partner from then on."""
        await visible_person(staff, person_ref)
        async with runtime.uow() as uow:
            consent = await intake.withdraw_consent(uow, person_ref, consent_ref, actor=staff.username)
        return queries.consent_out(consent, intake.today())

    # --- erasure (Art. 17) and the person's copy (Art. 15) -----------------------------------

    @router.post("/case-files/{person_ref}/erasure", status_code=status.HTTP_201_CREATED, response_model=ErasureOut,
                 tags=["erasure"], operation_id="request_erasure", responses={**SIGNED_IN, **NOT_FOUND})
    async def request_erasure(person_ref: str, body: ErasureIn, staff: Staff = Depends(erasure_officer)) -> ErasureOut:
        """Erase the person's data in intake now and ask every service to erase theirs; each confirms."""
        async with runtime.uow() as uow:
            erasure = await intake.request_erasure(uow, person_ref, body, actor=staff.username)
        async with runtime.sessions() as session:
            return await queries.get_erasure(session, erasure.erasure_ref)

    @router.get("/erasures/{erasure_ref}", response_model=ErasureOut, tags=["erasure"], operation_id="get_erasure",
                responses={**SIGNED_IN, **NOT_FOUND})
    async def get_erasure(erasure_ref: str, staff: Staff = Depends(erasure_officer)) -> ErasureOut:
        """Which services confirmed the erasure, and which are still expected to."""
        async with runtime.sessions() as session:
            return await queries.get_erasure(session, erasure_ref)

    @router.get("/case-files/{person_ref}/export", tags=["erasure"], operation_id="export_case_file",
                responses={**SIGNED_IN, **NOT_FOUND,
                           200: {"description": "one JSON file: everything intake, housing, referrals and notify hold"}})
    async def export(person_ref: str, request: Request, staff: Staff = Depends(erasure_officer)) -> Response:
        """Everything the refuge holds about the person (GDPR Art. 15), as one downloadable JSON file:
        intake's case file and requests, and what housing, referrals and notify answer for the person
        (asked with the caller's own sign-in; a service that cannot answer is named under `unavailable`)."""
        async with runtime.sessions() as session:
            document = await queries.export_person(session, person_ref, actor=staff.username, vault=intake.vault, scope=scope_of(staff), today=intake.today())
        document["other_services"] = await services.held_about(bearer_token(request), person_ref)
        return JSONResponse(document, headers={
            "Content-Disposition": f'attachment; filename="refuge-{person_ref}.json"', "Cache-Control": "no-store"})

    return router
