"""Referrals' staff API: thin routes over the handlers. Every route needs a signed-in staff member."""

from __future__ import annotations

import asyncio
from datetime import datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request, status
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from sqlmodel import col, select

from shared.auth import Role, Staff, require_roles
from shared.messaging import ServiceRuntime
from shared.web import enforce_access

from . import directory, domain
from .access import ACCESS
from .domain import Action
from .handlers import ConsentMissing, Referrals, ReferralNotFound, StatusRaced, UnknownPartner
from .links import PartnerLinks
from .store import FollowedPerson, PersonNeed, Referral, ReferralChange

Category = StrEnum("Category", {code: code for code in domain.CATEGORIES})
Region = StrEnum("Region", {code: code for code in domain.REGIONS})
RevokeReason = StrEnum("RevokeReason", {code: code for code in domain.REVOKE_REASONS})
StatusCode = StrEnum("StatusCode", {s.value: s.value for s in domain.Status})


class FollowedOut(BaseModel):
    person_ref: str
    reason: str
    last_event: str


class Reason(BaseModel):
    criterion: str
    detail: str


class PhoneOut(BaseModel):
    number: str
    type: str | None = None
    description: str | None = None
    languages: list[str] = []


class ServiceOut(BaseModel):
    service_ref: str
    name: str
    categories: list[str]
    eligibility: str | None = None


class PartnerSummary(BaseModel):
    partner_ref: str
    name: str
    alternate_name: str | None = None
    regions: list[str]
    categories: list[str]
    email: str | None = None
    referral_email: str | None = None
    phones: list[PhoneOut]
    services: list[ServiceOut]


class SearchResult(PartnerSummary):
    reasons: list[Reason]
    why: str


class NewReferral(BaseModel):
    person_ref: str = Field(min_length=3, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")
    partner_ref: str = Field(min_length=1, max_length=64)
    category: Category
    service_ref: str | None = Field(None, max_length=64)
    share_personal_data: bool = Field(False, description="share the person's contact details (needs consent or an override)")
    override_reason: str | None = Field(None, max_length=500, description="why data is shared without recorded consent")


class RevokeIn(BaseModel):
    reason_code: RevokeReason | None = None


class ChangeOut(BaseModel):
    from_status: str | None
    to_status: str
    actor_kind: str
    actor: str
    reason_code: str | None
    outcome: str | None
    at: datetime


class ReferralOut(BaseModel):
    referral_ref: str
    person_ref: str
    partner_ref: str
    partner_name: str | None
    category: str
    service_ref: str | None
    origin: str
    cause_ref: str | None
    status: str
    outcome: str | None
    reason_code: str | None
    share_requested: bool
    shares_personal_data: bool
    consent_ref: str | None
    override_reason: str | None
    override_by: str | None
    made_by: str
    created_at: datetime
    respond_by: datetime
    updated_at: datetime
    history: list[ChangeOut] | None = None


class PartnerNotice(BaseModel):
    """What notify needs to tell a partner about a referral (never put on the broker)."""

    referral_ref: str
    partner_ref: str
    partner_name: str | None
    recipient_email: str | None
    language: str
    category: str
    category_label: dict[str, str]
    status: str
    shares_personal_data: bool
    respond_by: datetime
    link: str
    link_expires_at: datetime


class PartnerLink(BaseModel):
    referral_ref: str
    url: str
    expires_at: datetime


class ConsentOut(BaseModel):
    consent_ref: str
    partner_ref: str
    purpose: str
    expires_on: str | None
    withdrawn: bool


class PersonOut(BaseModel):
    person_ref: str
    followed: bool
    needs: list[str]
    open_needs: list[str]
    consents: list[ConsentOut]
    referrals: list[ReferralOut]


def unprocessable(field: str, reason: str) -> HTTPException:
    return HTTPException(422, [{"field": field, "reason": reason, "type": "value_error"}])


def summary(org: dict) -> dict:
    return {
        "partner_ref": org["id"], "name": org["name"], "alternate_name": org.get("alternate_name"),
        "regions": domain.organisation_regions(org), "categories": domain.organisation_categories(org),
        "email": org.get("email"), "referral_email": domain.referral_email(org),
        "phones": [PhoneOut(number=p["number"], type=p.get("type"), description=p.get("description"),
                            languages=[lang.get("code") or lang.get("name") for lang in p.get("languages") or []])
                   for p in org.get("phones") or []],
        "services": [ServiceOut(service_ref=s["id"], name=s["name"], categories=domain.service_categories(s),
                                eligibility=s.get("eligibility_description")) for s in org.get("services") or []],
    }


def build_router(runtime: ServiceRuntime, referrals: Referrals, links: PartnerLinks) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["referrals"],
                       dependencies=[Depends(enforce_access(runtime.current_staff, ACCESS))])
    coordinators = require_roles(runtime.current_staff, Role.social_coordinator)
    local = ZoneInfo(runtime.settings.timezone)

    async def referral_out(session, referral: Referral, partners: dict[str, dict], *, history: bool = False) -> ReferralOut:
        changes = None
        if history:
            rows = (await session.exec(select(ReferralChange).where(ReferralChange.referral_ref == referral.referral_ref)
                                       .order_by(col(ReferralChange.id)))).all()
            changes = [ChangeOut.model_validate(r, from_attributes=True) for r in rows]
        partner = partners.get(referral.partner_ref)
        return ReferralOut(**referral.model_dump(exclude={"id", "link_nonce", "override_at"}),
                           partner_name=partner["name"] if partner else None,
                           shares_personal_data=await referrals.shares_now(session, referral), history=changes)

    # --- directory -------------------------------------------------------------------------

    @router.get("/directory/vocabulary")
    async def vocabulary() -> dict:
        """Codes the console offers, with their labels in English, French and Dutch."""
        return {"categories": domain.CATEGORIES, "regions": domain.REGIONS,
                "decline_reasons": domain.DECLINE_REASONS, "unsuccessful_reasons": domain.UNSUCCESSFUL_REASONS,
                "revoke_reasons": domain.REVOKE_REASONS, "statuses": [s.value for s in domain.Status]}

    @router.get("/directory/search", response_model=list[SearchResult])
    async def search(
        category: Category | None = None,
        region: Region | None = None,
        language: str | None = Query(None, max_length=40, description="ISO 639 code or name, e.g. nl or Dutch"),
        open_now: bool = False,
        q: str | None = Query(None, max_length=200, description="free text"),
        at: datetime | None = Query(None, description="judge 'open now' at this moment instead of now"),
    ) -> list[SearchResult]:
        moment = at or referrals.now()
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=local)
        async with runtime.sessions() as session:
            orgs = await referrals.partners(session)
        query = domain.SearchQuery(category=category.value if category else None, region=region.value if region else None,
                                   language=language, open_now=open_now, text=q)
        return [SearchResult(**summary(m.organisation), reasons=m.reasons,
                             why="; ".join(r["detail"] for r in m.reasons) or "every partner (no criteria given)")
                for m in domain.search(orgs, query, moment, local)]

    @router.get("/directory/organizations", response_model=list[PartnerSummary])
    async def organisations() -> list[PartnerSummary]:
        async with runtime.sessions() as session:
            return [PartnerSummary(**summary(org)) for org in await referrals.partners(session)]

    @router.get("/directory/organizations/{partner_ref}", description="the HSDS 3 organisation, services nested")
    async def organisation(partner_ref: str) -> JSONResponse:
        async with runtime.sessions() as session:
            org = await referrals.partner(session, partner_ref)
        if org is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such partner")
        return JSONResponse(org)

    @router.get("/directory/export.json", description="the whole directory: a JSON array of HSDS 3 organisations")
    async def export_json() -> Response:
        async with runtime.sessions() as session:
            orgs = await referrals.partners(session)
        return Response(directory.export_json(orgs), media_type="application/json",
                        headers={"Content-Disposition": 'attachment; filename="partner-directory.json"'})

    @router.get("/directory/export.zip", description="the whole directory as HSDS 3 CSV tables in a zip")
    async def export_zip() -> Response:
        async with runtime.sessions() as session:
            orgs = await referrals.partners(session)
        return Response(directory.export_csv_zip(orgs), media_type="application/zip",
                        headers={"Content-Disposition": 'attachment; filename="partner-directory.zip"'})

    async def _import(orgs: list[dict], replace: bool) -> dict:
        async with runtime.uow() as uow:
            counts = await referrals.import_directory(uow, orgs, replace=replace)
            await uow.commit()
        return counts

    @router.post("/directory/import", dependencies=[Depends(coordinators)],
                 description="HSDS 3 JSON: an array of organisations (services nested). Upserts by id; "
                             "replace=true also removes organisations missing from the file.")
    async def import_json(body: list | dict = Body(...), replace: bool = False) -> dict:
        try:
            orgs = await asyncio.to_thread(directory.import_json, body)  # validation is CPU work
        except directory.InvalidDirectory as exc:
            raise HTTPException(422, [{"field": e.split(":", 1)[0], "reason": e.split(":", 1)[-1].strip(),
                                       "type": "hsds"} for e in exc.errors[:50]]) from None
        return await _import(orgs, replace)

    @router.post("/directory/import.zip", dependencies=[Depends(coordinators)],
                 description="HSDS 3 CSV tables in a zip (the body is the zip file itself)")
    async def import_zip(request: Request, replace: bool = False) -> dict:
        body = await request.body()
        if len(body) > 20 * 1024 * 1024:
            raise unprocessable("body", "archive larger than 20 MB")
        try:
            orgs = await asyncio.to_thread(directory.import_csv_zip, body)
        except directory.InvalidDirectory as exc:
            raise HTTPException(422, [{"field": e.split(":", 1)[0], "reason": e.split(":", 1)[-1].strip(),
                                       "type": "hsds"} for e in exc.errors[:50]]) from None
        return await _import(orgs, replace)

    # --- referrals -------------------------------------------------------------------------

    @router.post("/referrals", status_code=status.HTTP_201_CREATED, response_model=ReferralOut)
    async def make_referral(body: NewReferral, staff: Staff = Depends(runtime.current_staff)) -> ReferralOut:
        async with runtime.uow() as uow:
            try:
                referral = await referrals.make_referral(
                    uow, person_ref=body.person_ref, partner_ref=body.partner_ref, category=body.category.value,
                    service_ref=body.service_ref, share_requested=body.share_personal_data,
                    override_reason=body.override_reason, made_by=staff.username)
            except UnknownPartner:
                raise unprocessable("partner_ref", "not in the partner directory") from None
            except ConsentMissing:
                raise unprocessable("override_reason", "no consent recorded for this partner and purpose: record the "
                                    "person's consent in intake, give an override reason, or refer anonymously") from None
            except ValueError as exc:
                raise unprocessable("service_ref", str(exc)) from None
            await uow.commit()
            partner = await referrals.partner(uow.session, referral.partner_ref)
            return await referral_out(uow.session, referral, {referral.partner_ref: partner} if partner else {},
                                      history=True)

    @router.get("/referrals", response_model=list[ReferralOut])
    async def list_referrals(person_ref: str | None = Query(None, max_length=32),
                             partner_ref: str | None = Query(None, max_length=64),
                             status_: StatusCode | None = Query(None, alias="status"),
                             category: Category | None = None,
                             limit: int = Query(200, ge=1, le=1000)) -> list[ReferralOut]:
        query = select(Referral)
        if person_ref:
            query = query.where(Referral.person_ref == person_ref)
        if partner_ref:
            query = query.where(Referral.partner_ref == partner_ref)
        if status_:
            query = query.where(Referral.status == status_.value)
        if category:
            query = query.where(Referral.category == category.value)
        async with runtime.sessions() as session:
            rows = (await session.exec(query.order_by(col(Referral.id).desc()).limit(limit))).all()
            partners = {o["id"]: o for o in await referrals.partners(session)}
            return [await referral_out(session, r, partners) for r in rows]

    @router.get("/referrals/{referral_ref}", response_model=ReferralOut)
    async def get_referral(referral_ref: str) -> ReferralOut:
        async with runtime.sessions() as session:
            try:
                referral = await referrals.get(session, referral_ref)
            except ReferralNotFound:
                raise HTTPException(status.HTTP_404_NOT_FOUND, "no such referral") from None
            partner = await referrals.partner(session, referral.partner_ref)
            return await referral_out(session, referral, {referral.partner_ref: partner} if partner else {}, history=True)

    @router.post("/referrals/{referral_ref}/revoke", response_model=ReferralOut)
    async def revoke(referral_ref: str, body: RevokeIn | None = None,
                     staff: Staff = Depends(runtime.current_staff)) -> ReferralOut:
        async with runtime.uow() as uow:
            try:
                referral = await referrals.change_status(
                    uow, referral_ref, Action.revoke, actor=staff.username,
                    reason_code=body.reason_code.value if body and body.reason_code else None)
            except ReferralNotFound:
                raise HTTPException(status.HTTP_404_NOT_FOUND, "no such referral") from None
            except (domain.TransitionRefused, StatusRaced) as exc:
                raise HTTPException(status.HTTP_409_CONFLICT, str(exc) if isinstance(exc, domain.TransitionRefused)
                                    else "the referral changed meanwhile; reload it") from None
            await uow.commit()
            partner = await referrals.partner(uow.session, referral.partner_ref)
            return await referral_out(uow.session, referral, {referral.partner_ref: partner} if partner else {},
                                      history=True)

    @router.get("/referrals/{referral_ref}/partner-notice", response_model=PartnerNotice,
                description="for notify: the partner's referral address and a fresh signed link")
    async def partner_notice(referral_ref: str) -> PartnerNotice:
        async with runtime.sessions() as session:
            try:
                referral = await referrals.get(session, referral_ref)
            except ReferralNotFound:
                raise HTTPException(status.HTTP_404_NOT_FOUND, "no such referral") from None
            partner = await referrals.partner(session, referral.partner_ref) or {}
            shares = await referrals.shares_now(session, referral)
        return PartnerNotice(
            referral_ref=referral.referral_ref, partner_ref=referral.partner_ref, partner_name=partner.get("name"),
            recipient_email=domain.referral_email(partner) if partner else None,
            language=domain.notice_language(partner) if partner else "en",
            category=referral.category, category_label=domain.CATEGORIES[referral.category], status=referral.status,
            shares_personal_data=shares, respond_by=referral.respond_by,
            link=links.url(links.token(referral.referral_ref, referral.link_nonce)), link_expires_at=links.expires_at())

    @router.get("/referrals/{referral_ref}/partner-link", response_model=PartnerLink,
                description="for notify: a fresh signed link to the partner's page of this referral")
    async def partner_link(referral_ref: str) -> PartnerLink:
        async with runtime.sessions() as session:
            try:
                referral = await referrals.get(session, referral_ref)
            except ReferralNotFound:
                raise HTTPException(status.HTTP_404_NOT_FOUND, "no such referral") from None
        return PartnerLink(referral_ref=referral.referral_ref, url=links.url(links.token(referral.referral_ref,
                                                                                          referral.link_nonce)),
                           expires_at=links.expires_at())

    # --- people ----------------------------------------------------------------------------

    @router.get("/followed", response_model=list[FollowedOut])
    async def followed() -> list[FollowedOut]:
        async with runtime.sessions() as session:
            rows = (await session.exec(select(FollowedPerson).order_by(col(FollowedPerson.id)))).all()
        return [FollowedOut(person_ref=r.person_ref, reason=r.reason, last_event=r.last_event) for r in rows]

    @router.get("/people/{person_ref}", response_model=PersonOut)
    async def person(person_ref: str) -> PersonOut:
        """What referrals knows of a person: needs (codes), consents, referrals; never personal data."""
        async with runtime.sessions() as session:
            followed = (await session.exec(select(FollowedPerson.id).where(FollowedPerson.person_ref == person_ref))).first()
            needs = (await session.exec(select(PersonNeed.need).where(PersonNeed.person_ref == person_ref)
                                        .order_by(col(PersonNeed.id)))).all()
            rows = (await session.exec(select(Referral).where(Referral.person_ref == person_ref)
                                       .order_by(col(Referral.id).desc()))).all()
            partners = {o["id"]: o for o in await referrals.partners(session)}
            referral_list = [await referral_out(session, r, partners) for r in rows]
            consents = await referrals.consents(session, person_ref)
        served = {r.category for r in rows if r.status in domain.OPEN_STATUSES
                  or (r.status == domain.Status.completed and r.outcome == "got_help")}
        open_needs = [n for n in needs if domain.NEED_CATEGORY.get(n) and domain.NEED_CATEGORY[n] not in served]
        return PersonOut(person_ref=person_ref, followed=followed is not None, needs=list(needs), open_needs=open_needs,
                         consents=[ConsentOut(consent_ref=c.consent_ref, partner_ref=c.partner_ref, purpose=c.purpose,
                                              expires_on=c.expires_on.isoformat() if c.expires_on else None,
                                              withdrawn=c.withdrawn) for c in consents],
                         referrals=referral_list)

    return router
