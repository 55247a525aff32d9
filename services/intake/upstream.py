"""The other services' APIs, called server-side by the console with the staff member's own token."""

from __future__ import annotations

import httpx
import structlog

log = structlog.get_logger("intake.upstream")


class Unreachable(Exception):
    pass


class OtherServices:
    def __init__(self, housing_url: str, timeout: float, referrals_url: str = "http://127.0.0.1:8003"):
        self.housing_url = housing_url.rstrip("/")
        self.referrals_url = referrals_url.rstrip("/")
        self.timeout = timeout
        self.client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(self.timeout))

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.aclose()
            self.client = None

    async def open_stays(self, token: str, person_ref: str | None = None) -> list[dict]:
        """Housing's list of open stays (GET /api/stays), as the signed-in staff member sees it."""
        if self.client is None:
            raise Unreachable("not started")
        try:
            response = await self.client.get(f"{self.housing_url}/api/stays",
                                             params={"person_ref": person_ref} if person_ref else None,
                                             headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError as exc:
            log.warning("housing.unreachable", error=type(exc).__name__)
            raise Unreachable(type(exc).__name__) from None
        if response.status_code != 200:
            log.warning("housing.refused", status=response.status_code)
            raise Unreachable(str(response.status_code))
        return response.json()

    async def partners(self, token: str) -> list[dict]:
        """Referrals' partner directory (GET /api/directory/organizations): reference and name of each."""
        if self.client is None:
            raise Unreachable("not started")
        try:
            response = await self.client.get(f"{self.referrals_url}/api/directory/organizations",
                                             headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError as exc:
            log.warning("referrals.unreachable", error=type(exc).__name__)
            raise Unreachable(type(exc).__name__) from None
        if response.status_code != 200:
            log.warning("referrals.refused", status=response.status_code)
            raise Unreachable(str(response.status_code))
        return [{"partner_ref": o["partner_ref"], "name": o["name"]} for o in response.json()
                if isinstance(o, dict) and "partner_ref" in o and "name" in o]
