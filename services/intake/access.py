"""Who may sign in, see and change what in intake; one place, so a stricter matrix can replace it.

The same signed token (shared.auth) works for the console and every service's API; the console
keeps it in an HttpOnly, SameSite=Strict cookie named `refuge_token`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from fastapi import HTTPException, Request, Response, status

from shared.auth import Role, Staff

from .accounts import StaffAccounts

TOKEN_COOKIE = "refuge_token"
CSRF_COOKIE = "refuge_csrf"
CASE_FILE_ROLES = frozenset({Role.intake_worker, Role.social_coordinator, Role.psychologist, Role.administrator})


# Roles that see every case file and the health needs in it; an intake worker sees the case files
# they recorded or followed up, without health needs (need-to-see).
ALL_FILES_ROLES = frozenset({Role.social_coordinator, Role.psychologist, Role.administrator})
HEALTH_ROLES = frozenset({Role.social_coordinator, Role.psychologist, Role.administrator})


@dataclass(frozen=True)
class Scope:
    username: str
    all_files: bool
    health: bool


def scope_of(staff: Staff) -> Scope:
    return Scope(staff.username, bool(staff.roles & ALL_FILES_ROLES), bool(staff.roles & HEALTH_ROLES))


def reads_case_files(staff: Staff) -> bool:
    return bool(staff.roles & CASE_FILE_ROLES)


# The roles housing's and notify's access matrices let read or act (tests keep them equal). The
# console shows the way only to those roles; the services still decide on every call.
PLACES_ROLES = frozenset({Role.intake_worker, Role.social_coordinator, Role.housing, Role.administrator})
OFFER_ROLES = frozenset({Role.social_coordinator, Role.housing, Role.administrator})
NOTIFICATIONS_ROLES = frozenset({Role.intake_worker, Role.social_coordinator, Role.housing, Role.administrator})
RETRY_ROLES = frozenset({Role.social_coordinator, Role.administrator})


def other_pages(staff: Staff | None) -> frozenset[str]:
    """The console's pages over other services' APIs that this staff member's role may open."""
    if staff is None:
        return frozenset()
    return frozenset(page for page, roles in (("places", PLACES_ROLES), ("notifications", NOTIFICATIONS_ROLES))
                     if staff.roles & roles)


def console_pages(staff: Staff | None) -> frozenset[str]:
    """Every part of the console this staff member may open: case files, and the pages above."""
    if staff is None:
        return frozenset()
    return other_pages(staff) | ({"case_files"} if reads_case_files(staff) else set())


def active_staff_dependency(runtime, staff_accounts: StaffAccounts):
    """The signed-in staff member (401 without a valid token, or once their account is deactivated)."""

    async def active_staff(request: Request) -> Staff:
        staff = await runtime.current_staff(request)
        if await staff_accounts.is_refused(staff.username):
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "account deactivated", headers={"WWW-Authenticate": "Bearer"})
        return staff

    return active_staff


def set_session_cookie(response: Response, token: str, *, max_age: int, secure: bool) -> None:
    response.set_cookie(TOKEN_COOKIE, token, max_age=max_age, httponly=True, samesite="strict", secure=secure, path="/")


def clear_session_cookie(response: Response, *, secure: bool) -> None:
    response.delete_cookie(TOKEN_COOKIE, httponly=True, samesite="strict", secure=secure, path="/")


class Csrf:
    """Every console form carries a token bound to the session (or, before sign-in, to a random
    cookie): HMAC(secret, session). A cross-site page can neither read nor compute it."""

    def __init__(self, secret: str, secure: bool):
        self.key = hashlib.sha256(("csrf:" + secret).encode()).digest()
        self.secure = secure

    def _base(self, request: Request, fresh_nonce: str | None = None) -> str | None:
        return request.cookies.get(TOKEN_COOKIE) or request.cookies.get(CSRF_COOKIE) or fresh_nonce

    def token(self, base: str) -> str:
        return hmac.new(self.key, base.encode(), hashlib.sha256).hexdigest()

    def token_for(self, request: Request, response_cookies: dict) -> str:
        """The token to put in a form; sets a pre-sign-in nonce cookie when there is no session yet."""
        base = self._base(request)
        if base is None:
            base = secrets.token_urlsafe(32)
            response_cookies[CSRF_COOKIE] = base
        return self.token(base)

    def token_after_sign_in(self, session_token: str) -> str:
        return self.token(session_token)

    def check(self, request: Request, submitted: str | None) -> bool:
        base = self._base(request)
        return bool(base and submitted) and hmac.compare_digest(self.token(base), str(submitted))

    def set_nonce(self, response: Response, nonce: str) -> None:
        response.set_cookie(CSRF_COOKIE, nonce, httponly=True, samesite="strict", secure=self.secure, path="/")
