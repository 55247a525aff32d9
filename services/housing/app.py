"""create_app: the only place housing's settings are read and its parts wired together."""

from pathlib import Path

from fastapi import FastAPI

from shared.logging import configure_logging
from shared.messaging import ServiceRuntime
from shared.store import is_sqlite
from shared.web import install_error_handlers

from . import api
from .handlers import SEED_FILE, Housing, seed_places
from .settings import HousingSettings
from .store import TABLES


def create_app(settings: HousingSettings | None = None) -> FastAPI:
    settings = settings or HousingSettings()
    configure_logging("housing", settings.log_level)
    housing = Housing(stay_months=settings.stay_months, postgres=not is_sqlite(settings.database_url))
    runtime = ServiceRuntime(settings, tables=TABLES, handlers=housing.handlers())
    if settings.seed_places:
        seed_file = Path(settings.seed_file) if settings.seed_file else SEED_FILE
        runtime.startup.append(lambda: seed_places(runtime.sessions, seed_file))
    app = FastAPI(title="Refuge housing", version="1", lifespan=runtime.lifespan())
    app.state.runtime = runtime
    install_error_handlers(app)
    runtime.mount_health(app)
    app.include_router(api.build_router(runtime))
    return app
