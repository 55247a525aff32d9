import time

import httpx

from shared.auth import DEV_SECRET, Role, TokenSigner

ALL_ROLES = list(Role)


def staff_headers(*roles: Role, username: str = "test-coordinator") -> dict[str, str]:
    """A signed staff token as intake issues at sign-in (the stack runs with the development secret)."""
    token = TokenSigner(DEV_SECRET).issue(username, roles or ALL_ROLES)
    return {"Authorization": f"Bearer {token}"}

PERSON = {
    "name": "Zanele Mokoena-Canary",
    "date_of_birth": "2004-03-14",
    "phone": "+32 470 99 88 77",
    "email": "zanele.canary@example.org",
    "language": "en",
    "channel": "phone",
    "situation": "excluded",
    "urgency": "immediate",
    "needs": ["accommodation", "legal", "mental_health"],
    "notes": "Thrown out last night by her uncle; sleeping at a friend's",
}


def post_request(intake_url: str, **overrides) -> dict:
    response = httpx.post(f"{intake_url}/api/requests", json={**PERSON, **overrides},
                          headers=staff_headers(), timeout=10)
    assert response.status_code == 201, response.text
    return response.json()


def wait_for(fetch, timeout: float = 30.0, every: float = 0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fetch()
        if last:
            return last
        time.sleep(every)
    return last


def open_stay(housing_url: str, person_ref: str):
    stays = httpx.get(f"{housing_url}/api/stays", headers=staff_headers(), timeout=5).json()
    return next((s for s in stays if s["person_ref"] == person_ref), None)
