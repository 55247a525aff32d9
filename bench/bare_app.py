"""The intake API's yardstick: a bare FastAPI endpoint that only validates the same body.

`python -m bench.bare_app --port 8099`, served by uvicorn with the same options as the services.
"""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI, status

from services.intake.schemas import NewRequest


def create_app() -> FastAPI:
    app = FastAPI(title="bare validating endpoint")

    @app.post("/api/requests", status_code=status.HTTP_201_CREATED)
    async def validate(body: NewRequest) -> dict:
        return {"status": "valid"}

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="bare FastAPI endpoint validating intake's request body")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(create_app(), host="127.0.0.1", port=args.port, loop="uvloop", http="httptools", log_level="warning",
                access_log=False, timeout_graceful_shutdown=5)


if __name__ == "__main__":
    main()
