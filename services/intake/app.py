"""create_app: the only place intake's settings are read and its parts wired together."""

import logging
from contextlib import asynccontextmanager
from pathlib import Path
from zoneinfo import ZoneInfo

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from shared.logging import configure_logging
from shared.messaging import ServiceRuntime
from shared.observability import FASTAPI_TELEMETRY
from shared.web import install_error_handlers

from . import api, audit, console, handlers, queries
from .access import Csrf
from .accounts import StaffAccounts
from .handlers import Intake
from .i18n import Console
from .keys import KeyRing, Vault
from .settings import IntakeSettings
from .store import TABLES
from .throttle import SignInThrottle
from .upstream import OtherServices

STATIC = Path(__file__).parent / "static"


def create_app(settings: IntakeSettings | None = None) -> FastAPI:
    settings = settings or IntakeSettings()
    configure_logging("intake", settings.log_level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per call to another service is noise
    runtime = ServiceRuntime(settings, tables=TABLES, handlers=handlers.HANDLERS)
    intake = Intake(youth_band=(settings.youth_min_age, settings.youth_max_age),
                    minor_follow_up_days=settings.minor_follow_up_days, timezone=settings.timezone,
                    vault=Vault(KeyRing(settings.key_ring.get_secret_value()), settings.search_key.get_secret_value(),
                                settings.keys_database_url), uows=runtime.uow)
    if settings.retention_closed_case_days:
        runtime.background.append(handlers.retention_task(intake, runtime, settings.retention_closed_case_days,
                                                          settings.retention_check_seconds))
    counters = queries.PublicCounters(runtime.sessions, settings.counters_cache_seconds)
    services = OtherServices(settings.housing_url, settings.upstream_timeout_seconds, settings.referrals_url,
                             settings.notify_url)
    secure_cookies = settings.public_base_url.startswith("https://")
    staff_accounts = StaffAccounts(runtime.sessions, time_cost=settings.argon2_time_cost,
                                   memory_kib=settings.argon2_memory_kib)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with runtime.lifespan()(app):
            await services.start()
            await intake.vault.sessions()
            try:
                yield
            finally:
                await services.stop()
                await intake.vault.close()

    app = FastAPI(
        title="Refuge intake", version="1", lifespan=lifespan, telemetry=FASTAPI_TELEMETRY,
        description="Calls for help, their assessment and case files. Sign in with POST /api/session and send "
                    "the token as `Authorization: Bearer …` (the staff console at / uses the `refuge_token` "
                    "cookie). Errors: 422 names the field and the reason; 404 means it does not exist or is "
                    "not yours to see.",
    )
    app.state.runtime = runtime
    app.state.intake = intake
    app.state.staff_accounts = staff_accounts
    install_error_handlers(app)
    audit.install(app, runtime)
    api.install_error_handlers(app)
    runtime.mount_health(app)
    throttle = SignInThrottle(runtime.sessions, max_failures=settings.sign_in_max_failures,
                              window_seconds=settings.sign_in_window_seconds)
    app.include_router(api.build_router(runtime, intake, counters, staff_accounts, secure_cookies=secure_cookies,
                                        throttle=throttle, services=services))
    app.include_router(console.build_console(
        runtime=runtime, intake=intake, console=Console(ZoneInfo(settings.timezone), settings.console_default_language),
        csrf=Csrf(settings.auth_secret.get_secret_value(), secure_cookies), services=services, counters=counters,
        staff_accounts=staff_accounts, throttle=throttle,
        secure_cookies=secure_cookies))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
