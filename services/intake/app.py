"""create_app: the only place intake's settings are read and its parts wired together."""

from contextlib import asynccontextmanager

from fastapi import FastAPI

from shared.logging import configure_logging
from shared.messaging import ServiceRuntime
from shared.web import install_error_handlers

from . import api, handlers, queries
from .handlers import Intake
from .settings import IntakeSettings
from .store import TABLES, check_columns


def create_app(settings: IntakeSettings | None = None) -> FastAPI:
    settings = settings or IntakeSettings()
    configure_logging("intake", settings.log_level)
    runtime = ServiceRuntime(settings, tables=TABLES, handlers=handlers.HANDLERS)
    intake = Intake(youth_band=(settings.youth_min_age, settings.youth_max_age),
                    minor_follow_up_days=settings.minor_follow_up_days, timezone=settings.timezone)
    runtime.startup.append(lambda: check_columns(runtime.engine))
    counters = queries.PublicCounters(runtime.sessions, settings.counters_cache_seconds)
    secure_cookies = settings.public_base_url.startswith("https://")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with runtime.lifespan()(app):
            yield

    app = FastAPI(
        title="Refuge intake", version="1", lifespan=lifespan,
        description="Calls for help, their assessment and case files. Sign in with POST /api/session; "
                    "send the token as `Authorization: Bearer …` (the console uses the `refuge_token` cookie).",
    )
    app.state.runtime = runtime
    app.state.intake = intake
    install_error_handlers(app)
    api.install_error_handlers(app)
    runtime.mount_health(app)
    app.include_router(api.build_router(runtime, intake, counters, secure_cookies=secure_cookies))
    return app
