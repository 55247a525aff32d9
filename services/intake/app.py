"""create_app: the only place intake's settings are read and its parts wired together."""

from fastapi import FastAPI

from shared.logging import configure_logging
from shared.messaging import ServiceRuntime
from shared.web import install_error_handlers

from . import api, handlers
from .settings import IntakeSettings
from .store import TABLES


def create_app(settings: IntakeSettings | None = None) -> FastAPI:
    settings = settings or IntakeSettings()
    configure_logging("intake", settings.log_level)
    runtime = ServiceRuntime(settings, tables=TABLES, handlers=handlers.HANDLERS)
    app = FastAPI(title="Refuge intake", version="1", lifespan=runtime.lifespan())
    app.state.runtime = runtime
    install_error_handlers(app)
    runtime.mount_health(app)
    app.include_router(api.build_router(runtime, (settings.youth_min_age, settings.youth_max_age)))
    return app
