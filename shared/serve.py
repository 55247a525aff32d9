"""Run one service: `python -m shared.serve intake`. Thin on purpose: create_app does the wiring."""

import argparse
import importlib
import sys

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
    uvicorn.run(app, host=settings.host, port=settings.port, loop="uvloop", http="httptools", log_level="warning",
                access_log=False, timeout_graceful_shutdown=10)


if __name__ == "__main__":
    main()
