"""Notify's HTTP API, for intake's staff console: the delivery log, retry, template previews,
rules and partner recipients. Thin routes; the work happens in handlers.Notify."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import AnyHttpUrl, BaseModel, EmailStr, Field
from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from shared.auth import Role, Staff, require_roles
from shared.messaging import ServiceRuntime
from shared.web import enforce_access

from . import domain
from .access import ACCESS
from .domain import LANGUAGES, Audience, ChannelChoice, Timing
from .handlers import Notify
from .rendering import CATALOGUE
from .rules import readable_event_types, rule_problems
from .store import Attempt, Delivery, Partner, Rule, utcnow

Language = Literal["fr", "nl", "en"]
PARTNER_REF = Path(..., min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")


def invalid(*problems: tuple[str, str]) -> RequestValidationError:
    return RequestValidationError([{"loc": ("body", *field.split(".")), "msg": reason, "type": "value_error"}
                                   for field, reason in problems])


def in_utc(field: str, moment: datetime, zone) -> datetime:
    """A moment from a query string: one given without an offset is the refuge's local time."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise RequestValidationError([{"loc": ("query", field), "msg": "is outside the dates the log can hold",
                                       "type": "value_error"}]) from None


# --- delivery log ------------------------------------------------------------------------------

class AttemptOut(BaseModel):
    number: int
    started_at: datetime
    finished_at: datetime | None
    duration_ms: int | None
    outcome: str
    detail: str | None
    retry_at: datetime | None


class DeliveryOut(BaseModel):
    notification_ref: str
    cause_event_id: str
    cause_event_type: str
    audience: str
    recipient_kind: str  # same as audience; kept for early readers
    recipient: str
    partner_ref: str | None
    person_ref: str | None
    channel: str
    template: str
    language: str
    status: str
    attempts: int
    reason_code: str | None
    last_error: str | None
    personal_data_shared: bool
    digest_ref: str | None
    created_at: datetime
    next_attempt_at: datetime
    sent_at: datetime | None
    failed_at: datetime | None

    @classmethod
    def of(cls, d: Delivery) -> DeliveryOut:
        return cls(**d.model_dump(include=set(cls.model_fields) - {"recipient_kind"}), recipient_kind=d.audience)


class DeliveryDetail(DeliveryOut):
    attempt_log: list[AttemptOut]


# --- rules ----------------------------------------------------------------------------------------

class RuleIn(BaseModel):
    name: str = Field(min_length=1, max_length=80, pattern=r"^[a-z0-9][a-z0-9-]*$")
    event_type: str = Field(max_length=64)
    audience: Audience
    channel: ChannelChoice = ChannelChoice.email
    template: str = Field(max_length=60)
    language: Language | None = None
    timing: Timing = Timing.immediate
    when: dict[str, list[str]] = Field(default_factory=dict)
    enabled: bool = True


class RuleOut(RuleIn):
    id: int
    updated_at: datetime
    updated_by: str


# --- partners ---------------------------------------------------------------------------------------

class PartnerIn(BaseModel):
    email: EmailStr | None = None
    webhook_url: AnyHttpUrl | None = None
    webhook_secret: str | None = Field(None, description="whsec_<base64>; generated when a webhook URL has none")
    language: Language = "fr"
    subscriptions: list[str] = Field(default_factory=list, description="event types this partner subscribes to")
    active: bool = True


class PartnerOut(BaseModel):
    partner_ref: str
    email: str | None
    webhook_url: str | None
    has_webhook_secret: bool
    language: str
    subscriptions: list[str]
    active: bool
    updated_at: datetime
    webhook_secret: str | None = Field(None, description="shown once, when notify generated or rotated it")

    @classmethod
    def of(cls, p: Partner, shown_secret: str | None = None) -> PartnerOut:
        return cls(partner_ref=p.partner_ref, email=p.email, webhook_url=p.webhook_url,
                   has_webhook_secret=bool(p.webhook_secret), language=p.language, subscriptions=list(p.subscriptions),
                   active=p.active, updated_at=p.updated_at, webhook_secret=shown_secret)


class SecretOut(BaseModel):
    partner_ref: str
    webhook_secret: str


# --- templates ---------------------------------------------------------------------------------------

class TemplateOut(BaseModel):
    name: str
    kind: str
    written_for: str
    languages: list[str]
    variables: list[str]


class PreviewOut(BaseModel):
    name: str
    language: str
    consent: bool
    subject: str
    text: str
    html: str
    webhook_body: dict | None


# A database integer: larger numbers name no rule and must not reach the store (SQLite refuses them).
RuleId = Annotated[int, Path(ge=1, le=2**31 - 1)]


def build_router(runtime: ServiceRuntime, notify: Notify) -> APIRouter:
    router = APIRouter(prefix="/api", dependencies=[Depends(enforce_access(runtime.current_staff, ACCESS))])
    editor = require_roles(runtime.current_staff, Role.social_coordinator)

    # --- delivery log -------------------------------------------------------------------------------

    @router.get("/deliveries", response_model=list[DeliveryOut], tags=["deliveries"])
    async def deliveries(
        response: Response,
        status_: str | None = Query(None, alias="status", max_length=20),
        channel: str | None = Query(None, max_length=10),
        audience: str | None = Query(None, max_length=30),
        event_type: str | None = Query(None, max_length=64),
        partner_ref: str | None = Query(None, max_length=64),
        person_ref: str | None = Query(None, max_length=64),
        cause_event_id: str | None = Query(None, max_length=80),
        since: datetime | None = Query(None, description="without an offset, in the refuge's time zone"),
        until: datetime | None = Query(None, description="without an offset, in the refuge's time zone"),
        limit: int = Query(100, ge=1, le=500),
        offset: int = Query(0, ge=0, le=2**31 - 1),
    ) -> list[DeliveryOut]:
        """The delivery log, newest first; `X-Total-Count` tells how many match the filters."""
        filters = []
        for column, value in ((Delivery.status, status_), (Delivery.channel, channel), (Delivery.audience, audience),
                              (Delivery.cause_event_type, event_type), (Delivery.partner_ref, partner_ref),
                              (Delivery.person_ref, person_ref), (Delivery.cause_event_id, cause_event_id)):
            if value:
                filters.append(column == value)
        if since:
            filters.append(col(Delivery.created_at) >= in_utc("since", since, notify.tz))
        if until:
            filters.append(col(Delivery.created_at) < in_utc("until", until, notify.tz))
        async with runtime.sessions() as session:
            total = (await session.exec(select(func.count()).select_from(Delivery).where(*filters))).one()
            rows = (await session.exec(select(Delivery).where(*filters).order_by(col(Delivery.id).desc())
                                       .offset(offset).limit(limit))).all()
        response.headers["X-Total-Count"] = str(total)
        return [DeliveryOut.of(r) for r in rows]

    async def detail(notification_ref: str) -> DeliveryDetail:
        async with runtime.sessions() as session:
            row = (await session.exec(select(Delivery).where(Delivery.notification_ref == notification_ref))).first()
            if row is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, "no such message")
            attempts = (await session.exec(select(Attempt).where(Attempt.delivery_id == row.id)
                                           .order_by(col(Attempt.number), col(Attempt.id)))).all()
        return DeliveryDetail(**DeliveryOut.of(row).model_dump(),
                              attempt_log=[AttemptOut(**a.model_dump(include=set(AttemptOut.model_fields))) for a in attempts])

    @router.get("/deliveries/{notification_ref}", response_model=DeliveryDetail, tags=["deliveries"])
    async def delivery(notification_ref: str = Path(..., max_length=32)) -> DeliveryDetail:
        """One message with every attempt: when, how long, what came back."""
        return await detail(notification_ref)

    @router.post("/deliveries/{notification_ref}/retry", response_model=DeliveryDetail, tags=["deliveries"],
                 status_code=status.HTTP_202_ACCEPTED)
    async def retry(notification_ref: str = Path(..., max_length=32), staff: Staff = Depends(editor)) -> DeliveryDetail:
        """Send a failed message again, same reference (Message-ID / webhook-id), fresh attempt budget."""
        was, retried = await notify.retry(notification_ref, staff.username)
        if was is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such message")
        if not retried:
            raise HTTPException(status.HTTP_409_CONFLICT, f"only a failed message can be retried (this one is {was})")
        return await detail(notification_ref)

    # --- templates -------------------------------------------------------------------------------------

    @router.get("/templates", response_model=list[TemplateOut], tags=["templates"])
    async def templates() -> list[TemplateOut]:
        return [TemplateOut(name=t.name, kind=t.kind, written_for=t.written_for,
                            languages=notify.renderer.languages(t.name),
                            variables=sorted(notify.renderer.variables(t.name))) for t in CATALOGUE.values()]

    @router.get("/templates/{name}/preview", response_model=PreviewOut, tags=["templates"])
    async def preview(name: str = Path(..., max_length=60), language: Language = "fr",
                      consent: bool = Query(False, description="partner templates: as sent with the person's consent")) -> PreviewOut:
        """A template rendered with sample references, as the recipient would get it."""
        info = CATALOGUE.get(name)
        if info is None or language not in notify.renderer.languages(name):
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such template in that language")
        sample = Delivery(notification_ref="N-preview", cause_event_id="preview", cause_event_type=info.written_for,
                          audience="preview", recipient="preview", template=name, language=language,
                          context=dict(info.sample))
        webhook = None
        if info.kind == "partner":
            context = domain.partner_view(info.sample, disclose_person=consent)
            if "referral_link" in info.sample:
                context["referral_link"] = info.sample["referral_link"]
            webhook = orjson.loads(notify.webhook_body(sample, context))
        else:
            context = notify.staff_context(sample)
        rendered = notify.renderer.email(name, language, context)
        return PreviewOut(name=name, language=language, consent=consent and info.kind == "partner",
                          subject=rendered.subject, text=rendered.text, html=rendered.html, webhook_body=webhook)

    # --- rules ---------------------------------------------------------------------------------------

    @router.get("/rules/vocabulary", tags=["rules"])
    async def vocabulary() -> dict:
        """What a rule may name: events (with their fields, for `when`), audiences, channels, timings,
        languages and templates."""
        return {
            "event_types": {name: sorted(c.model_fields) for name, c in readable_event_types().items()},
            "audiences": list(Audience), "channels": list(ChannelChoice), "timings": list(Timing),
            "languages": list(LANGUAGES),
            "templates": [{"name": t.name, "kind": t.kind} for t in CATALOGUE.values() if t.name != "digest"],
        }

    @router.get("/rules", response_model=list[RuleOut], tags=["rules"])
    async def rules(event_type: str | None = Query(None, max_length=64)) -> list[RuleOut]:
        async with runtime.sessions() as session:
            query = select(Rule).order_by(col(Rule.event_type), col(Rule.id))
            if event_type:
                query = query.where(Rule.event_type == event_type)
            return [RuleOut(**r.model_dump()) for r in (await session.exec(query)).all()]

    @router.get("/rules/{rule_id}", response_model=RuleOut, tags=["rules"])
    async def rule(rule_id: RuleId) -> RuleOut:
        async with runtime.sessions() as session:
            found = await session.get(Rule, rule_id)
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such rule")
        return RuleOut(**found.model_dump())

    def checked(body: RuleIn) -> dict:
        data = body.model_dump(mode="json")
        if problems := rule_problems(data, notify.renderer):
            raise invalid(*problems)
        return data

    @router.post("/rules", response_model=RuleOut, status_code=status.HTTP_201_CREATED, tags=["rules"])
    async def create_rule(body: RuleIn, staff: Staff = Depends(editor)) -> RuleOut:
        data = checked(body)
        async with runtime.uow() as uow:
            row = Rule(**data, updated_by=staff.username)
            uow.session.add(row)
            try:
                await uow.commit()
            except IntegrityError:
                raise HTTPException(status.HTTP_409_CONFLICT, "a rule with that name exists") from None
        await notify.read_rules()
        return RuleOut(**row.model_dump())

    @router.put("/rules/{rule_id}", response_model=RuleOut, tags=["rules"])
    async def replace_rule(rule_id: RuleId, body: RuleIn, staff: Staff = Depends(editor)) -> RuleOut:
        data = checked(body)
        async with runtime.uow() as uow:
            row = await uow.session.get(Rule, rule_id)
            if row is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, "no such rule")
            for key, value in data.items():
                setattr(row, key, value)
            row.updated_at, row.updated_by = utcnow(), staff.username
            uow.session.add(row)
            try:
                await uow.commit()
            except IntegrityError:
                raise HTTPException(status.HTTP_409_CONFLICT, "a rule with that name exists") from None
        await notify.read_rules()
        return RuleOut(**row.model_dump())

    @router.delete("/rules/{rule_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["rules"])
    async def delete_rule(rule_id: RuleId, _staff: Staff = Depends(editor)) -> Response:
        async with runtime.uow() as uow:
            row = await uow.session.get(Rule, rule_id)
            if row is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, "no such rule")
            await uow.session.delete(row)
            await uow.commit()
        await notify.read_rules()
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    # --- partner recipients ------------------------------------------------------------------------------

    @router.get("/partners", response_model=list[PartnerOut], tags=["partners"])
    async def partners() -> list[PartnerOut]:
        async with runtime.sessions() as session:
            return [PartnerOut.of(p) for p in (await session.exec(select(Partner).order_by(col(Partner.partner_ref)))).all()]

    @router.get("/partners/{partner_ref}", response_model=PartnerOut, tags=["partners"])
    async def partner(partner_ref: str = PARTNER_REF) -> PartnerOut:
        async with runtime.sessions() as session:
            found = await session.get(Partner, partner_ref)
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such partner")
        return PartnerOut.of(found)

    @router.put("/partners/{partner_ref}", response_model=PartnerOut, tags=["partners"])
    async def register_partner(body: PartnerIn, partner_ref: str = PARTNER_REF, _staff: Staff = Depends(editor)) -> PartnerOut:
        """Register or update how a partner is reached. `partner_ref` is referrals' opaque reference."""
        problems = []
        if not body.email and not body.webhook_url:
            problems.append(("email", "give an e-mail address, a webhook URL, or both"))
        if body.webhook_secret is not None and not domain.valid_webhook_secret(body.webhook_secret):
            problems.append(("webhook_secret", "must be whsec_ followed by at least 24 bytes in base64"))
        known = readable_event_types()
        for i, kind in enumerate(body.subscriptions):
            if kind not in known:
                problems.append((f"subscriptions.{i}", "not an event notify reads"))
        if problems:
            raise invalid(*problems)
        shown = None
        async with runtime.uow() as uow:
            row = await uow.session.get(Partner, partner_ref) or Partner(partner_ref=partner_ref)
            row.email = str(body.email) if body.email else None
            row.webhook_url = str(body.webhook_url) if body.webhook_url else None
            if body.webhook_secret:
                row.webhook_secret = body.webhook_secret
            elif row.webhook_url and not row.webhook_secret:
                row.webhook_secret = shown = domain.new_webhook_secret()
            row.language, row.subscriptions, row.active = body.language, list(body.subscriptions), body.active
            row.updated_at = utcnow()
            uow.session.add(row)
            await uow.commit()
        return PartnerOut.of(row, shown)

    @router.post("/partners/{partner_ref}/webhook-secret", response_model=SecretOut, tags=["partners"])
    async def rotate_secret(partner_ref: str = PARTNER_REF, _staff: Staff = Depends(editor)) -> SecretOut:
        """A new signing secret, shown once; messages from now on are signed with it."""
        async with runtime.uow() as uow:
            row = await uow.session.get(Partner, partner_ref)
            if row is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, "no such partner")
            row.webhook_secret, row.updated_at = domain.new_webhook_secret(), utcnow()
            uow.session.add(row)
            await uow.commit()
        return SecretOut(partner_ref=partner_ref, webhook_secret=row.webhook_secret)

    @router.delete("/partners/{partner_ref}", status_code=status.HTTP_204_NO_CONTENT, tags=["partners"])
    async def remove_partner(partner_ref: str = PARTNER_REF, _staff: Staff = Depends(editor)) -> Response:
        async with runtime.uow() as uow:
            row = await uow.session.get(Partner, partner_ref)
            if row is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, "no such partner")
            await uow.session.delete(row)
            await uow.commit()
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    return router
