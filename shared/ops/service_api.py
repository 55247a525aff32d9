"""The `refuge` commands that act through the services' own APIs, as an administrator.

The token is signed with the deployment's REFUGE_AUTH_SECRET, like a staff sign-in, so each
service checks it exactly as it checks the console's calls.
"""

from __future__ import annotations

import os

import httpx

from shared.auth import DEV_SECRET, Role, TokenSigner

from .common import EXIT_FAILED, EXIT_UNREACHABLE, OpsError

DEFAULT_URLS = {"intake": "http://127.0.0.1:8001", "housing": "http://127.0.0.1:8002",
                "referrals": "http://127.0.0.1:8003", "notify": "http://127.0.0.1:8004"}


def service_url(service: str) -> str:
    return os.environ.get(f"REFUGE_{service.upper()}_URL", DEFAULT_URLS[service]).rstrip("/")


def client(service: str, timeout: float = 10.0) -> httpx.Client:
    secret = os.environ.get("REFUGE_AUTH_SECRET", DEV_SECRET)
    token = TokenSigner(secret).issue("operator-cli", [Role.administrator])
    return httpx.Client(base_url=service_url(service), timeout=timeout, headers={"Authorization": f"Bearer {token}"})


def call(service: str, method: str, path: str, *, timeout: float = 10.0, **kwargs) -> httpx.Response:
    try:
        with client(service, timeout) as http:
            response = http.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise OpsError(f"{service} unreachable at {service_url(service)}: {type(exc).__name__}", EXIT_UNREACHABLE) from None
    if response.status_code >= 400:
        raise OpsError(f"{service} refused {method} {path}: {response.status_code} {_detail(response)}", EXIT_FAILED)
    return response


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except ValueError:
        return response.text[:200]
    if isinstance(detail, list):
        return "; ".join(f"{d.get('field')}: {d.get('reason')}" for d in detail)
    return str(detail)
