import time

import httpx

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
    response = httpx.post(f"{intake_url}/api/requests", json={**PERSON, **overrides}, timeout=10)
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
    stays = httpx.get(f"{housing_url}/api/stays", timeout=5).json()
    return next((s for s in stays if s["person_ref"] == person_ref), None)
