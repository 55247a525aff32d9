"""Sign-in throttling: after too many refused sign-ins for a user name or from a client address
within the window, further attempts are answered 429 with Retry-After. Failures are kept in the
store, so a restart does not reset them."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from sqlmodel import col, delete, func, select

from .store import SignInFailure


def _key(kind: str, value: str) -> str:
    return hashlib.sha256(f"{kind}:{value.casefold()}".encode()).hexdigest()


class SignInThrottle:
    def __init__(self, sessions, *, max_failures: int = 5, window_seconds: int = 900, now=None):
        self.sessions = sessions
        self.max_failures = max_failures
        self.window = timedelta(seconds=window_seconds)
        self.now = now or (lambda: datetime.now(UTC))

    def _keys(self, username: str, address: str) -> list[str]:
        return [_key("user", username), _key("address", address)]

    async def retry_after(self, username: str, address: str) -> int | None:
        """Seconds to wait before trying again, or None when an attempt may go ahead."""
        since = self.now() - self.window
        async with self.sessions() as session:
            for key in self._keys(username, address):
                count, oldest = (await session.exec(
                    select(func.count(), func.min(SignInFailure.at))
                    .where(SignInFailure.key == key, col(SignInFailure.at) > since))).one()
                if count >= self.max_failures:
                    oldest = oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC)
                    return max(1, int((oldest + self.window - self.now()).total_seconds()) + 1)
        return None

    async def failed(self, username: str, address: str) -> None:
        now = self.now()
        async with self.sessions() as session:
            session.add_all([SignInFailure(key=key, at=now) for key in self._keys(username, address)])
            await session.exec(delete(SignInFailure).where(col(SignInFailure.at) < now - self.window))
            await session.commit()

    async def succeeded(self, username: str) -> None:
        async with self.sessions() as session:
            await session.exec(delete(SignInFailure).where(SignInFailure.key == _key("user", username)))
            await session.commit()
