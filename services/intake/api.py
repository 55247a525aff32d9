"""Intake's HTTP API: thin routes over the handlers."""

from __future__ import annotations

from fastapi import Depends, APIRouter, HTTPException, Request, status
from sqlmodel import col, select

from shared.messaging import ServiceRuntime

from . import handlers
from .schemas import NewRequest, RequestOut, RuleOut, TimelineOut
from .store import AssessmentRecord, HelpRequest, TimelineEntry


def build_router(runtime: ServiceRuntime, youth_band: tuple[int, int]) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["requests"], dependencies=[Depends(runtime.current_staff)])

    @router.post("/requests", status_code=status.HTTP_201_CREATED, response_model=RequestOut)
    async def record_request(body: NewRequest, request: Request) -> RequestOut:
        async with runtime.uow() as uow:
            _person, help_request, record = await handlers.record_request(uow, body, youth_band=youth_band)
        return _out(help_request, record)

    @router.get("/requests/{request_ref}", response_model=RequestOut)
    async def get_request(request_ref: str) -> RequestOut:
        async with runtime.sessions() as session:
            help_request = (await session.exec(select(HelpRequest).where(HelpRequest.request_ref == request_ref))).first()
            if help_request is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, "no such request")
            record = (
                await session.exec(
                    select(AssessmentRecord)
                    .where(AssessmentRecord.request_ref == request_ref)
                    .order_by(col(AssessmentRecord.id).desc())
                )
            ).first()
        return _out(help_request, record)

    @router.get("/people/{person_ref}/timeline", response_model=list[TimelineOut])
    async def timeline(person_ref: str) -> list[TimelineOut]:
        async with runtime.sessions() as session:
            rows = (
                await session.exec(
                    select(TimelineEntry).where(TimelineEntry.person_ref == person_ref).order_by(col(TimelineEntry.occurred_at))
                )
            ).all()
        return [TimelineOut(event_type=r.event_type, occurred_at=r.occurred_at, details=r.details) for r in rows]

    return router


def _out(help_request: HelpRequest, record: AssessmentRecord) -> RequestOut:
    return RequestOut(
        request_ref=help_request.request_ref,
        person_ref=help_request.person_ref,
        received_at=help_request.received_at,
        decision=record.decision,
        track=record.track,
        place_kind=record.place_kind,
        rules=[RuleOut(**r) for r in record.rules],
    )
