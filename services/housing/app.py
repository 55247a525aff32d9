"""create_app: the only place housing's settings are read and its parts wired together."""

import asyncio
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import structlog
from fastapi import FastAPI
from sqlalchemy import func
from sqlmodel import col, select

from shared.events.codes import PlaceKind
from shared.logging import configure_logging
from shared.messaging import ServiceRuntime
from shared.observability import DOMAIN, FASTAPI_TELEMETRY
from shared.web import install_error_handlers

from . import api
from .handlers import SEED_FILE, Housing, prepare_store, seed_places
from .settings import HousingSettings
from .domain import PlaceState
from .store import TABLES, Place, WaitlistEntry

log = structlog.get_logger("housing")

DESCRIPTION = """Places, stays and the waiting list of the refuge.

Flats and their confidential addresses live only here. A freed place is reserved for the next
person on that kind's waiting list (urgency first, then waiting time) until staff accept or
refuse the offer. Every route needs a staff token (`Authorization: Bearer …`, as intake issues
at sign-in).
"""


def refuge_calendar(settings: HousingSettings) -> Callable[[], date]:
    """Today in the refuge's time zone, moved by HOUSING_CLOCK_OFFSET_DAYS (tests only)."""
    zone = ZoneInfo(settings.time_zone)
    offset = timedelta(days=settings.clock_offset_days)
    return lambda: (datetime.now(zone) + offset).date()


def create_app(settings: HousingSettings | None = None, *, today: Callable[[], date] | None = None) -> FastAPI:
    settings = settings or HousingSettings()
    configure_logging("housing", settings.log_level)
    housing = Housing(stay_months=settings.stay_months, today=today or refuge_calendar(settings),
                      ending_thresholds=settings.stay_ending_days)
    runtime = ServiceRuntime(settings, tables=TABLES, handlers=housing.handlers())
    runtime.startup.append(lambda: prepare_store(runtime.sessions))
    if settings.seed_places:
        seed_file = Path(settings.seed_file) if settings.seed_file else SEED_FILE
        runtime.startup.append(lambda: seed_places(runtime.sessions, seed_file))

    async def stay_clock() -> None:
        """Announce stays ending at every tick, the first one at start-up (catches up after a restart)."""
        while True:
            try:
                await housing.announce_ending_stays(runtime.uow)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store is away: try again at the next tick
                log.warning("stay_clock.tick_failed", error=type(exc).__name__)
            await asyncio.sleep(settings.clock_tick_seconds)

    runtime.background.append(stay_clock)

    async def occupancy_gauges() -> None:
        async with runtime.sessions() as session:
            places = {(k, s): n for k, s, n in (await session.exec(
                select(Place.kind, Place.state, func.count()).group_by(Place.kind, Place.state))).all()}
            waiting = dict((await session.exec(select(WaitlistEntry.place_kind, func.count())
                                               .where(col(WaitlistEntry.left_at).is_(None))
                                               .group_by(WaitlistEntry.place_kind))).all())
        for kind in PlaceKind:
            for state in PlaceState:
                DOMAIN.labels("housing", f"places_{state}", kind).set(places.get((kind, state), 0))
            DOMAIN.labels("housing", "waiting_list", kind).set(waiting.get(kind, 0))

    runtime.metric_hooks.append(occupancy_gauges)
    app = FastAPI(title="Refuge housing", version="1", description=DESCRIPTION, lifespan=runtime.lifespan(), telemetry=FASTAPI_TELEMETRY)
    app.state.runtime = runtime
    app.state.housing = housing
    install_error_handlers(app)
    runtime.mount_health(app)
    app.include_router(api.build_router(runtime, housing))
    return app
