"""Signed, expiring links that let a partner answer a referral without an account.

A link carries the referral's reference and its current link nonce, signed with
REFERRALS_LINK_SECRET (itsdangerous, its own salt). It proves who may look; each form on the page
it opens carries a page nonce that works once, so a replayed or forged post changes nothing.
The token goes in the query string, never in the path: paths end up in traces and metrics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

SALT = "refuge-partner-referral-link"
PATH = "/partner/referral"


class LinkRefused(Exception):
    """Tampered, malformed or cancelled: nothing to show."""


class LinkExpired(LinkRefused):
    pass


@dataclass(frozen=True)
class LinkClaim:
    referral_ref: str
    nonce: str


class PartnerLinks:
    def __init__(self, secret: str, *, max_age: timedelta, base_url: str, now: Callable[[], datetime] | None = None):
        self.max_age = max_age
        self.base_url = base_url.rstrip("/")
        self.now = now or (lambda: datetime.now(UTC))
        clock = self.now

        class ClockedSigner(TimestampSigner):
            def get_timestamp(self) -> int:
                return int(clock().timestamp())

        self.serializer = URLSafeTimedSerializer(secret, salt=SALT, signer=ClockedSigner)

    def token(self, referral_ref: str, nonce: str) -> str:
        return self.serializer.dumps({"r": referral_ref, "n": nonce})

    def url(self, token: str) -> str:
        return f"{self.base_url}{PATH}?{urlencode({'token': token})}"

    def expires_at(self) -> datetime:
        return self.now() + self.max_age

    def read(self, token: str) -> LinkClaim:
        try:
            data = self.serializer.loads(token, max_age=int(self.max_age.total_seconds()))
        except SignatureExpired:
            raise LinkExpired("link expired") from None
        except (BadSignature, ValueError, TypeError):
            raise LinkRefused("link not valid") from None
        if not isinstance(data, dict) or not isinstance(data.get("r"), str) or not isinstance(data.get("n"), str):
            raise LinkRefused("link not valid")
        return LinkClaim(data["r"], data["n"])
