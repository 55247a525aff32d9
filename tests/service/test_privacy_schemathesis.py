"""Schemathesis against housing, referrals and notify in-process (real Redis, SQLite stores): with
an administrator's token no generated input makes a server error, and without a token every
operation is refused (401) except the partners' signed-link pages.

The schema is taken with `schemathesis.openapi.from_dict(app.openapi())` rather than `from_asgi`:
from_asgi fetches the document through Starlette's TestClient, which runs the app's lifespan (store,
broker, background loops) on its own thread and event loop. Here the cases Schemathesis generates
are sent through httpx's ASGI transport on the test's own loop, against the apps already started.
"""

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from shared.auth import DEV_SECRET, Role, TokenSigner
from tests.service.test_privacy_access import services  # noqa: F401  (fixture)

EXAMPLES_PER_OPERATION = 20
ADMIN = {"Authorization": f"Bearer {TokenSigner(DEV_SECRET).issue('fuzzer', [Role.administrator])}"}
WITHOUT_TOKEN = ("/partner/",)  # the signed link is the partner's key


def generated_requests(operation, examples: int) -> list[dict]:
    requests: list[dict] = []

    @given(case=operation.as_strategy())
    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def collect(case):
        requests.append(case.as_transport_kwargs(base_url="http://service"))

    collect()
    return requests


async def send(client: httpx.AsyncClient, request: dict, headers: dict[str, str]) -> httpx.Response:
    request = {**request, "headers": {**{k: v for k, v in request["headers"].items() if k.lower() != "authorization"},
                                      **headers}}
    request.pop("cookies", None)
    return await client.request(**request)


@pytest.mark.timeout(240)
async def test_no_generated_input_makes_a_server_error_and_no_operation_answers_without_a_token(services):
    counts: dict[str, int] = {}
    errors: list[str] = []
    for name, client in services.items():
        schema = schemathesis.openapi.from_dict(client.app.openapi())
        operations = [result.ok() for result in schema.get_all_operations()]
        assert operations, name
        for operation in operations:
            requests = generated_requests(operation, EXAMPLES_PER_OPERATION)
            assert requests, (name, operation.method, operation.path)
            public = operation.path.startswith(WITHOUT_TOKEN)
            anonymous = await send(client, requests[0], {})
            if not public:
                assert anonymous.status_code == 401, (name, operation.method, operation.path, anonymous.status_code)
            for request in requests:
                response = await send(client, request, ADMIN)
                counts[name] = counts.get(name, 0) + 1
                if response.status_code >= 500:
                    errors.append(f"{name} {request['method']} {request['url']} -> {response.status_code}")
    assert errors == [], "\n".join(errors[:20])
    assert all(counts[name] >= 40 for name in ("housing", "referrals", "notify")), counts
