"""create_app: the only place notify's settings are read and its parts wired together."""

from fastapi import FastAPI

from shared.logging import configure_logging
from shared.messaging import ServiceRuntime
from shared.web import install_error_handlers

from . import api
from .handlers import Notify
from .settings import NotifySettings
from .store import TABLES


def create_app(settings: NotifySettings | None = None) -> FastAPI:
    settings = settings or NotifySettings()
    configure_logging("notify", settings.log_level)
    handlers: dict = {}
    runtime = ServiceRuntime(settings, tables=TABLES, handlers=handlers)
    notify = Notify(settings, runtime.uow)
    handlers.update(notify.handlers())
    runtime.background.append(notify.run_sender)
    app = FastAPI(title="Refuge notify", version="1", lifespan=runtime.lifespan())
    app.state.runtime = runtime
    install_error_handlers(app)
    runtime.mount_health(app)
    app.include_router(api.build_router(runtime))
    return app
