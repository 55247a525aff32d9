from fastapi import Depends, APIRouter
from pydantic import BaseModel
from sqlmodel import col, select

from shared.messaging import ServiceRuntime

from .store import Delivery


class DeliveryOut(BaseModel):
    notification_ref: str
    cause_event_type: str
    channel: str
    recipient_kind: str
    status: str
    attempts: int
    last_error: str | None


def build_router(runtime: ServiceRuntime) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["deliveries"], dependencies=[Depends(runtime.current_staff)])

    @router.get("/deliveries", response_model=list[DeliveryOut])
    async def deliveries(status: str | None = None) -> list[DeliveryOut]:
        async with runtime.sessions() as session:
            query = select(Delivery).order_by(col(Delivery.id).desc()).limit(500)
            if status:
                query = query.where(Delivery.status == status)
            rows = (await session.exec(query)).all()
        return [DeliveryOut(**r.model_dump(include=set(DeliveryOut.model_fields))) for r in rows]

    return router
