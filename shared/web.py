"""HTTP conventions shared by every service's API."""

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

log = structlog.get_logger("http")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # Name the field and the reason; never echo the submitted value back (it may be personal data).
        errors = [
            {"field": ".".join(str(p) for p in err["loc"] if p != "body") or "body", "reason": err["msg"], "type": err["type"]}
            for err in exc.errors()
        ]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(Exception)
    async def crashed(_request: Request, exc: Exception) -> JSONResponse:
        log.error("http.unhandled", error=type(exc).__name__)
        return JSONResponse({"detail": "internal error"}, status_code=500)
