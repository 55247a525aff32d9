"""A real HTTP server that receives webhooks as a partner would: it verifies each request's
Standard Webhooks signature with the `standardwebhooks` package, keeps what it received, and can
be told to answer 500, 429 with Retry-After, etc. It can also serve fixed JSON on GET routes
(e.g. to stand in for another service's API in a test).

    with WebhookReceiver() as hooks:
        url = hooks.endpoint("/org-a", secret="whsec_...")
        hooks.script("/org-a", 500, (429, {"Retry-After": "1"}))   # then 200
        ...
        hooks.wait_for(lambda r: r.path == "/org-a" and r.status == 200)
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook, WebhookVerificationError


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival
    status: int  # what the receiver answered
    verified: bool | None  # signature checked with the endpoint's secret; None when it has none
    error: str | None = None

    @property
    def payload(self):
        return json.loads(self.body) if self.body else None

    @property
    def webhook_id(self) -> str | None:
        return self.headers.get("webhook-id")


@dataclass
class WebhookReceiver:
    host: str = "127.0.0.1"
    port: int = 0
    secrets: dict[str, str] = field(default_factory=dict)  # path -> whsec_ secret
    replies: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)  # scripted, consumed in order
    json_routes: dict[str, tuple[int, object]] = field(default_factory=dict)  # GET path -> (status, body)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self):
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- configuration -------------------------------------------------------------------------

    def endpoint(self, path: str, secret: str | None = None) -> str:
        if secret:
            self.secrets[path] = secret
        return self.url(path)

    def url(self, path: str = "") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def script(self, path: str, *replies: int | tuple[int, dict[str, str]]) -> None:
        """Answer the next requests to `path` with these statuses (then 200 again)."""
        with self.lock:
            self.replies.setdefault(path, []).extend(r if isinstance(r, tuple) else (r, {}) for r in replies)

    def serve_json(self, path: str, body: object, status: int = 200) -> None:
        with self.lock:
            self.json_routes[path] = (status, body)

    # --- reading what arrived -------------------------------------------------------------------

    def requests(self, path: str | None = None, method: str = "POST") -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.method == method and (path is None or r.path == path)]

    def wait_for(self, predicate, timeout: float = 20.0, count: int = 1) -> list[Received]:
        deadline = time.monotonic() + timeout
        found: list[Received] = []
        while time.monotonic() < deadline:
            with self.lock:
                found = [r for r in self.received if predicate(r)]
            if len(found) >= count:
                return found
            time.sleep(0.05)
        return found

    # --- the server ----------------------------------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        length = int(request.headers.get("content-length") or 0)
        body = request.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in request.headers.items()}
        path = request.path
        status, extra, payload = 200, {}, b""
        verified, error = None, None
        with self.lock:
            route = self.json_routes.get(path) if method == "GET" else None
            secret = self.secrets.get(path)
        if route is not None:
            status, obj = route
            payload = json.dumps(obj).encode()
            extra = {"content-type": "application/json"}
        elif method == "GET":
            status = 404
        else:
            if secret:
                try:
                    Webhook(secret).verify(body, headers)
                    verified = True
                except WebhookVerificationError as exc:
                    verified, error, status = False, str(exc), 401
            if status == 200:
                with self.lock:
                    queue = self.replies.get(path) or []
                    if queue:
                        status, extra = queue.pop(0)
        with self.lock:
            self.received.append(Received(method, path, headers, body, time.monotonic(), status, verified, error))
        request.send_response(status)
        for key, value in extra.items():
            request.send_header(key, value)
        request.send_header("content-length", str(len(payload)))
        request.end_headers()
        if payload:
            request.wfile.write(payload)

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                receiver._handle(self, "POST")

            def do_GET(self):  # noqa: N802
                receiver._handle(self, "GET")

            def log_message(self, *_args):
                pass

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="webhook-receiver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
