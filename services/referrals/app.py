"""create_app: the only place referrals' settings are read and its parts wired together."""

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from fastapi import FastAPI
from sqlalchemy import func
from sqlmodel import select

from shared.logging import configure_logging
from shared.messaging import ServiceRuntime
from shared.observability import DOMAIN, FASTAPI_TELEMETRY
from shared.web import install_error_handlers

from . import api, partner
from .domain import Status
from .handlers import Referrals, seed_directory
from .links import PartnerLinks
from .settings import ReferralsSettings
from .store import TABLES, Referral

REFUGE_NAME = "Le Refuge Bruxelles"


def create_app(settings: ReferralsSettings | None = None, *, now: Callable[[], datetime] | None = None) -> FastAPI:
    """`now` replaces the clock (tests): it drives referral deadlines, expiry, links and 'open now'."""
    settings = settings or ReferralsSettings()
    configure_logging("referrals", settings.log_level)
    referrals = Referrals(settings, now=now)
    runtime = ServiceRuntime(settings, tables=TABLES, handlers=referrals.handlers())
    links = PartnerLinks(settings.link_secret.get_secret_value(), max_age=timedelta(hours=settings.link_max_age_hours),
                         base_url=settings.public_base_url, now=referrals.now)
    if settings.seed_directory:
        seed_file = Path(settings.directory_file) if settings.directory_file else None
        runtime.startup.append(lambda: seed_directory(runtime.sessions, seed_file))

    async def expiry_clock() -> None:
        await referrals.run_expiry(runtime.uow)

    runtime.background.append(expiry_clock)

    async def referral_gauges() -> None:
        async with runtime.sessions() as session:
            counts = dict((await session.exec(select(Referral.status, func.count()).group_by(Referral.status))).all())
        for status in Status:
            DOMAIN.labels("referrals", "referrals", status).set(counts.get(status, 0))
        DOMAIN.labels("referrals", "referrals_open", "all").set(counts.get(Status.pending, 0) + counts.get(Status.accepted, 0))

    runtime.metric_hooks.append(referral_gauges)
    app = FastAPI(title="Refuge referrals", version="1", lifespan=runtime.lifespan(), telemetry=FASTAPI_TELEMETRY)
    app.state.runtime = runtime
    app.state.referrals = referrals
    app.state.links = links
    install_error_handlers(app)
    runtime.mount_health(app)
    app.include_router(api.build_router(runtime, referrals, links))
    app.include_router(partner.build_router(runtime, referrals, links, REFUGE_NAME))
    return app
