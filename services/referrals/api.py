from fastapi import Depends, APIRouter
from pydantic import BaseModel
from sqlmodel import col, select

from shared.messaging import ServiceRuntime

from .store import FollowedPerson


class FollowedOut(BaseModel):
    person_ref: str
    reason: str
    last_event: str


def build_router(runtime: ServiceRuntime) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["referrals"], dependencies=[Depends(runtime.current_staff)])

    @router.get("/followed", response_model=list[FollowedOut])
    async def followed() -> list[FollowedOut]:
        async with runtime.sessions() as session:
            rows = (await session.exec(select(FollowedPerson).order_by(col(FollowedPerson.id)))).all()
        return [FollowedOut(person_ref=r.person_ref, reason=r.reason, last_event=r.last_event) for r in rows]

    return router
