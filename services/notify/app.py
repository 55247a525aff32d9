"""create_app: the only place notify's settings are read and its parts wired together."""

from fastapi import FastAPI
from sqlalchemy import func
from sqlmodel import select

from shared.logging import configure_logging
from shared.messaging import ServiceRuntime
from shared.observability import DOMAIN, FASTAPI_TELEMETRY
from shared.web import install_error_handlers

from . import api
from .handlers import Notify, seed_partners, seed_rules
from .settings import NotifySettings
from .store import TABLES, Delivery


def create_app(settings: NotifySettings | None = None, *, clock=None) -> FastAPI:
    """`clock` (a callable returning an aware datetime) lets tests move time for quiet hours and digests."""
    settings = settings or NotifySettings()
    configure_logging("notify", settings.log_level)
    handlers: dict = {}
    runtime = ServiceRuntime(settings, tables=TABLES, handlers=handlers)
    notify = Notify(settings, runtime.uow, clock=clock)
    handlers.update(notify.handlers())
    if settings.seed_rules:
        runtime.startup.append(lambda: seed_rules(runtime.uow))
    if settings.seed_partners:
        runtime.startup.append(lambda: seed_partners(runtime.uow, settings.seed_partners))
    runtime.startup.append(notify.read_rules)  # after the seeds, before the first event is read
    runtime.background.append(notify.run_sender)
    runtime.background.append(notify.follow_rules)

    async def delivery_gauges() -> None:
        async with runtime.sessions() as session:
            counts = dict((await session.exec(select(Delivery.status, func.count()).group_by(Delivery.status))).all())
        for state in ("held", "pending", "sending", "sent", "failed", "digested"):
            DOMAIN.labels("notify", "deliveries", state).set(counts.get(state, 0))

    runtime.metric_hooks.append(delivery_gauges)
    app = FastAPI(title="Refuge notify", version="1", lifespan=runtime.lifespan(), telemetry=FASTAPI_TELEMETRY)
    app.state.runtime = runtime
    app.state.notify = notify
    install_error_handlers(app)
    runtime.mount_health(app)
    app.include_router(api.build_router(runtime, notify))
    return app
