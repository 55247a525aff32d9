"""Each service's OpenAPI document, written under docs/openapi/ and checked to be current."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

SERVICES = ("intake", "housing", "referrals", "notify")
DIRECTORY = Path(__file__).resolve().parents[2] / "docs" / "openapi"


def build(service: str) -> dict:
    settings_module = importlib.import_module(f"services.{service}.settings")
    settings_cls = next(v for k, v in vars(settings_module).items() if k.endswith("Settings") and k != "ServiceSettings")
    app = importlib.import_module(f"services.{service}.app").create_app(settings_cls(_env_file=None))
    return app.openapi()


def render(document: dict) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def stale(directory: Path = DIRECTORY) -> list[str]:
    return [s for s in SERVICES
            if not (directory / f"{s}.json").exists() or (directory / f"{s}.json").read_text() != render(build(s))]


def write(directory: Path = DIRECTORY) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    changed = []
    for service in SERVICES:
        path = directory / f"{service}.json"
        text = render(build(service))
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            changed.append(service)
    return changed
