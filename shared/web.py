"""HTTP conventions shared by every service's API: errors that echo nothing, and security headers
on every response."""

import os

import structlog
from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

log = structlog.get_logger("http")

# Server-rendered pages load their scripts and styles from the service itself: no inline script,
# no inline style, no framing, forms post only back to the service.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
# FastAPI's /docs and /redoc pages load Swagger UI / ReDoc from a CDN with an inline bootstrap script.
DOCS_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; img-src 'self' data: https://fastapi.tiangolo.com; "
    "worker-src 'self' blob:; object-src 'none'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
DOCS_PATHS = ("/docs", "/redoc")
PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=(), usb=(), interest-cohort=()"
HSTS = "max-age=63072000; includeSubDomains"


def security_headers(path: str, scheme: str, forwarded_proto: str | None, production: bool) -> dict[str, str]:
    headers = {
        "Content-Security-Policy": DOCS_CONTENT_SECURITY_POLICY if path.startswith(DOCS_PATHS) else CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Permissions-Policy": PERMISSIONS_POLICY,
        "Cross-Origin-Opener-Policy": "same-origin",
    }
    if scheme == "https" or forwarded_proto == "https" or production:
        headers["Strict-Transport-Security"] = HSTS
    if not path.startswith(("/static/", "/partner/assets/")):
        # API answers and pages may carry case data: never kept by a browser or a proxy.
        headers["Cache-Control"] = "no-store"
    return headers


class SecurityHeaders:
    """Pure ASGI middleware (no buffering of bodies): adds the headers a response does not set itself."""

    def __init__(self, app, *, owner: FastAPI):
        self.app = app
        self.owner = owner
        self._production: bool | None = None

    def production(self) -> bool:
        if self._production is None:
            settings = getattr(getattr(self.owner.state, "runtime", None), "settings", None)
            environment = getattr(settings, "environment", None) or os.environ.get("REFUGE_ENVIRONMENT", "development")
            self._production = environment != "development"
        return self._production

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        forwarded = dict(scope.get("headers") or []).get(b"x-forwarded-proto", b"").decode("latin-1") or None
        extra = security_headers(scope.get("path", ""), scope.get("scheme", "http"), forwarded, self.production())

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                if b"content-security-policy" in present:
                    # The page chose its own framing (e.g. intake's embeddable counters): leave it be.
                    present.add(b"x-frame-options")
                message = {**message, "headers": [
                    *message.get("headers", []),
                    *((k.lower().encode(), v.encode()) for k, v in extra.items() if k.lower().encode() not in present)]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_middleware(SecurityHeaders, owner=app)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # Name the field and the reason; never echo the submitted value back (it may be personal data).
        errors = [
            {"field": ".".join(str(p) for p in err["loc"] if p != "body") or "body", "reason": err["msg"], "type": err["type"]}
            for err in exc.errors()
        ]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        log.error("http.unhandled", error=type(exc).__name__)
        # Answered by the outermost layer, outside the middleware above: set the headers here too.
        middleware = SecurityHeaders(None, owner=app)
        headers = security_headers(request.url.path, request.url.scheme, request.headers.get("x-forwarded-proto"),
                                   middleware.production())
        return JSONResponse({"detail": "internal error"}, status_code=500, headers=headers)


# --- need-to-see access ------------------------------------------------------------------------

DENIED = "not allowed for your role"  # the same answer whatever was asked: a refusal reveals nothing
SERVICE_PRINCIPAL = "service:"  # a service's own token (no role), e.g. "service:notify"


def enforce_access(current_staff, access: dict[tuple[str, str], frozenset[str]]):
    """Router dependency: the operation (method, route template) must be in `access` and the caller
    must hold one of its roles, or be the service principal named there (e.g. "service:notify").
    An operation nobody decided on is refused, so a new route cannot leak by omission."""
    async def check(request: Request, staff=Depends(current_staff)):
        route = request.scope.get("route")
        allowed = access.get((request.method, getattr(route, "path", "")), frozenset())
        principal = staff.username if staff.username.startswith(SERVICE_PRINCIPAL) and not staff.roles else None
        if not ({str(r) for r in staff.roles} & allowed or principal in allowed):
            raise HTTPException(status.HTTP_403_FORBIDDEN, DENIED)
        return staff

    return check
