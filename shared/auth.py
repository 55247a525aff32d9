"""Staff sign-in shared by every service: a signed, expiring token that each service verifies
itself, so no service trusts a caller because of where it sits on the network.

Intake signs a token at sign-in; the console forwards it (`Authorization: Bearer …`) to the
other services' APIs. Roles decide what a caller may see and do.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from fastapi import Depends, HTTPException, Request, status
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

DEV_SECRET = "development-only-secret-change-me"


class Role(StrEnum):
    intake_worker = "intake_worker"
    social_coordinator = "social_coordinator"
    housing = "housing"
    psychologist = "psychologist"
    administrator = "administrator"


@dataclass(frozen=True)
class Staff:
    username: str
    roles: frozenset[Role]

    def has(self, *roles: Role) -> bool:
        return bool(self.roles & set(roles))


class TokenSigner:
    def __init__(self, secret: str, max_age_seconds: int = 8 * 3600):
        self.serializer = URLSafeTimedSerializer(secret, salt="refuge-staff-token")
        self.max_age = max_age_seconds

    def issue(self, username: str, roles: list[Role] | set[Role]) -> str:
        return self.serializer.dumps({"sub": username, "roles": sorted(str(r) for r in roles)})

    def verify(self, token: str) -> Staff:
        data = self.serializer.loads(token, max_age=self.max_age)
        return Staff(username=data["sub"], roles=frozenset(Role(r) for r in data["roles"] if r in Role.__members__))


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.cookies.get("refuge_token")


VERIFIED_STAFF = "refuge.staff"  # the request's scope key: who signed the token, once checked


def staff_dependency(signer: TokenSigner):
    """FastAPI dependency: the signed-in staff member, or 401. Dependencies here are async: FastAPI
    runs a plain `def` on a worker thread, a hop that costs more than the check itself."""

    async def current_staff(request: Request) -> Staff:
        token = bearer_token(request)
        if not token:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "sign-in required", headers={"WWW-Authenticate": "Bearer"})
        try:
            staff = signer.verify(token)
        except (SignatureExpired, BadSignature):
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "sign-in expired or invalid",
                                headers={"WWW-Authenticate": "Bearer"}) from None
        request.scope[VERIFIED_STAFF] = staff
        return staff

    return current_staff



def require_roles(current_staff, *roles: Role):
    """Dependency that lets through only staff holding one of `roles` (administrators always)."""

    async def check(staff: Staff = Depends(current_staff)) -> Staff:
        if not staff.has(*roles, Role.administrator):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "not allowed for your role")
        return staff

    return check
