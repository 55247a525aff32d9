"""The other services' APIs, called server-side by the console with the staff member's own token."""

from __future__ import annotations

import asyncio

import httpx
import structlog

log = structlog.get_logger("intake.upstream")


class Unreachable(Exception):
    pass


class Refused(Exception):
    """The other service answered, and said no: 403 (not for this role), 404 (no such thing) or
    409 (not in the current state). The service decides; the console only shows its answer."""

    def __init__(self, status: int, detail: str = ""):
        super().__init__(status, detail)
        self.status = status
        self.detail = detail


class OtherServices:
    def __init__(self, housing_url: str, timeout: float, referrals_url: str = "http://127.0.0.1:8003",
                 notify_url: str = "http://127.0.0.1:8004"):
        self.housing_url = housing_url.rstrip("/")
        self.referrals_url = referrals_url.rstrip("/")
        self.notify_url = notify_url.rstrip("/")
        self.timeout = timeout
        self.client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(self.timeout))

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.aclose()
            self.client = None

    async def _call(self, service: str, method: str, url: str, token: str, *, ok: tuple[int, ...] = (200,),
                    **kwargs) -> httpx.Response:
        """The answer when its status is in `ok`; Refused for 403, 404 and 409; Unreachable otherwise."""
        if self.client is None:
            raise Unreachable("not started")
        try:
            response = await self.client.request(method, url, headers={"Authorization": f"Bearer {token}"}, **kwargs)
        except httpx.HTTPError as exc:
            log.warning(f"{service}.unreachable", error=type(exc).__name__)
            raise Unreachable(type(exc).__name__) from None
        if response.status_code in ok:
            return response
        log.warning(f"{service}.refused", status=response.status_code)
        if response.status_code in (403, 404, 409):
            try:
                detail = str(response.json().get("detail", ""))[:300]
            except ValueError:
                detail = ""
            raise Refused(response.status_code, detail)
        raise Unreachable(str(response.status_code))

    async def _housing(self, method: str, path: str, token: str, **kwargs) -> httpx.Response:
        return await self._call("housing", method, f"{self.housing_url}{path}", token, **kwargs)

    async def _referrals(self, method: str, path: str, token: str, **kwargs) -> httpx.Response:
        return await self._call("referrals", method, f"{self.referrals_url}{path}", token, **kwargs)

    async def _notify(self, method: str, path: str, token: str, **kwargs) -> httpx.Response:
        return await self._call("notify", method, f"{self.notify_url}{path}", token, **kwargs)

    # --- housing -------------------------------------------------------------------------------

    async def open_stays(self, token: str, person_ref: str | None = None) -> list[dict]:
        """Housing's list of open stays (GET /api/stays), as the signed-in staff member sees it."""
        try:
            response = await self._housing("GET", "/api/stays", token,
                                           params={"person_ref": person_ref} if person_ref else None)
        except Refused as exc:
            raise Unreachable(str(exc.status)) from None
        return response.json()

    async def board(self, token: str) -> dict:
        """Housing's occupancy board (GET /api/board); addresses only where housing gives them to this role."""
        return (await self._housing("GET", "/api/board", token)).json()

    async def stays_ending(self, token: str, within_days: int) -> list[dict]:
        return (await self._housing("GET", "/api/stays/ending", token, params={"within_days": within_days})).json()

    async def waitlist(self, token: str) -> list[dict]:
        return (await self._housing("GET", "/api/waitlist", token)).json()

    async def offers(self, token: str) -> list[dict]:
        return (await self._housing("GET", "/api/offers", token)).json()

    async def accept_offer(self, token: str, offer_ref: str) -> dict:
        return (await self._housing("POST", f"/api/offers/{offer_ref}/accept", token, ok=(201,))).json()

    async def refuse_offer(self, token: str, offer_ref: str, reason: str | None) -> dict:
        return (await self._housing("POST", f"/api/offers/{offer_ref}/refuse", token,
                                    json={"reason": reason} if reason else None)).json()

    # --- referrals -----------------------------------------------------------------------------

    async def partners(self, token: str) -> list[dict]:
        """Referrals' partner directory (GET /api/directory/organizations): reference and name of each."""
        try:
            response = await self._referrals("GET", "/api/directory/organizations", token)
        except Refused as exc:
            raise Unreachable(str(exc.status)) from None
        return [{"partner_ref": o["partner_ref"], "name": o["name"]} for o in response.json()
                if isinstance(o, dict) and "partner_ref" in o and "name" in o]

    # --- notify --------------------------------------------------------------------------------

    async def deliveries(self, token: str, filters: dict, *, limit: int, offset: int) -> tuple[list[dict], int]:
        """Notify's delivery log (GET /api/deliveries), newest first, and how many match the filters."""
        response = await self._notify("GET", "/api/deliveries", token, params={**filters, "limit": limit, "offset": offset})
        return response.json(), int(response.headers.get("X-Total-Count", "0"))

    async def delivery(self, token: str, notification_ref: str) -> dict:
        return (await self._notify("GET", f"/api/deliveries/{notification_ref}", token)).json()

    async def retry_delivery(self, token: str, notification_ref: str) -> dict:
        return (await self._notify("POST", f"/api/deliveries/{notification_ref}/retry", token, ok=(202,))).json()

    async def templates(self, token: str) -> list[dict]:
        return (await self._notify("GET", "/api/templates", token)).json()

    async def preview(self, token: str, name: str, language: str) -> dict:
        return (await self._notify("GET", f"/api/templates/{name}/preview", token, params={"language": language})).json()

    # --- the person's copy (GDPR Art. 15) ------------------------------------------------------

    async def held_about(self, token: str, person_ref: str) -> dict:
        """What housing, referrals and notify hold about the person, each as that service answers it;
        a service that cannot answer is named as such, so the copy never looks complete when it is not."""
        reads = {
            "housing": [("stays", self._housing, "/api/stays", {"open_only": "false", "person_ref": person_ref}),
                        ("waiting_list", self._housing, "/api/waitlist", {"person_ref": person_ref})],
            "referrals": [("person", self._referrals, f"/api/people/{person_ref}", None),
                          ("referrals", self._referrals, "/api/referrals", {"person_ref": person_ref})],
            "notify": [("messages", self._notify, "/api/deliveries", {"person_ref": person_ref, "limit": 500})],
        }

        async def one(service: str) -> dict:
            held = {}
            for name, call, path, params in reads[service]:
                try:
                    held[name] = (await call("GET", path, token, params=params)).json()
                except Refused as exc:
                    if exc.status != 404:  # 404: the service holds nothing of the kind about the person
                        return {"unavailable": f"{service} refused ({exc.status})"}
                    held[name] = None
                except Unreachable:
                    return {"unavailable": f"{service} could not be reached"}
            return held

        answers = await asyncio.gather(*(one(service) for service in reads))
        return dict(zip(reads, answers, strict=True))
