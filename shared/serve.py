"""Run one service: `python -m shared.serve intake`. Thin on purpose: create_app does the wiring."""

import argparse
import gc
import importlib
import sys
from contextlib import asynccontextmanager

# Optional in every library that would load them here (structlog's pretty tracebacks, Mako's
# highlighted error pages, httpx's command-line client): a service writes JSON lines and no HTML
# traceback, and the two would hold about 10 MB in each service for nothing. The `refuge` command,
# a process of its own, still uses rich.
NOT_LOADED = ("rich", "pygments")
for _name in NOT_LOADED:
    sys.modules.setdefault(_name, None)

import uvicorn  # noqa: E402

SERVICES = ("intake", "housing", "referrals", "notify")


def main() -> None:
    parser = argparse.ArgumentParser(description="run one refuge service")
    parser.add_argument("service", choices=SERVICES)
    args = parser.parse_args()
    app_module = importlib.import_module(f"services.{args.service}.app")
    settings_module = importlib.import_module(f"services.{args.service}.settings")
    settings_cls = next(v for k, v in vars(settings_module).items() if k.endswith("Settings") and k != "ServiceSettings")
    settings = settings_cls()
    app = app_module.create_app(settings)
    app.router.lifespan_context = _startup_objects_set_aside(app.router.lifespan_context)
    uvicorn.run(app, host=settings.host, port=settings.port, loop="uvloop", http="httptools", log_level="warning",
                access_log=False, timeout_graceful_shutdown=10)


def _startup_objects_set_aside(lifespan):
    """Once the service has started, the objects made so far (modules, the app, the stores' metadata:
    about 170,000) are kept out of the garbage collector's full passes. Each full pass otherwise
    walked them all and held the event loop for about 100 ms, several times a minute under load."""

    @asynccontextmanager
    async def started(app):
        async with lifespan(app) as state:
            # No collection first: it would add 70-190 ms to the start, for a few hundred objects.
            gc.freeze()
            yield state

    return started


if __name__ == "__main__":
    main()
