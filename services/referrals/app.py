"""create_app: the only place referrals' settings are read and its parts wired together."""

from fastapi import FastAPI

from shared.logging import configure_logging
from shared.messaging import ServiceRuntime
from shared.web import install_error_handlers

from . import api, handlers
from .settings import ReferralsSettings
from .store import TABLES


def create_app(settings: ReferralsSettings | None = None) -> FastAPI:
    settings = settings or ReferralsSettings()
    configure_logging("referrals", settings.log_level)
    runtime = ServiceRuntime(settings, tables=TABLES, handlers=handlers.HANDLERS)
    app = FastAPI(title="Refuge referrals", version="1", lifespan=runtime.lifespan())
    app.state.runtime = runtime
    install_error_handlers(app)
    runtime.mount_health(app)
    app.include_router(api.build_router(runtime))
    return app
