"""Schemathesis fuzzes intake's OpenAPI against the running service: no input may cause a server error,
and every answer matches what the document promises (status codes, content types, bodies)."""

import re
import subprocess
import sys

import httpx

from shared.auth import DEV_SECRET, Role, TokenSigner
from tests.conftest import store_kinds

CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_schema_conformance,response_headers_conformance")


def test_no_input_makes_intake_fail_and_every_answer_matches_its_openapi(stack_factory, make_database):
    store = store_kinds()[-1]  # PostgreSQL when there is one: it refuses more than SQLite does
    stack = stack_factory(database_urls={"intake": make_database(store, "intake")},
                          extra_env={"INTAKE_COUNTERS_CACHE_SECONDS": "0", "INTAKE_ARGON2_TIME_COST": "1",
                                     "INTAKE_ARGON2_MEMORY_KIB": "1024"}).start(["intake"])
    token = TokenSigner(DEV_SECRET).issue("fuzzer", [Role.intake_worker])
    run = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", f"{stack.url('intake')}/openapi.json",
         "--header", f"Authorization: Bearer {token}", "--checks", CHECKS, "--max-examples", "10",
         "--workers", "2", "--no-color", "--suppress-health-check", "all"],
        capture_output=True, text=True, timeout=240,
    )
    report = run.stdout[-6000:] + run.stderr[-2000:]
    assert run.returncode == 0, report + "\n" + stack.logs()[-3000:]
    assert "Tested: 18" in run.stdout, report  # every operation of the API was exercised

    # Without a sign-in every operation is refused, except the public counters and signing in or out.
    public = {("GET", "/api/public/counters"), ("POST", "/api/session"), ("DELETE", "/api/session")}
    document = httpx.get(f"{stack.url('intake')}/openapi.json", timeout=10).json()
    answered = {}
    for path, methods in document["paths"].items():
        for method in methods:
            if (method.upper(), path) in public:
                continue
            url = stack.url("intake") + re.sub(r"\{[^}]+\}", "X-000000000001", path)
            answered[f"{method.upper()} {path}"] = httpx.request(method.upper(), url, json={}, timeout=10).status_code
    assert len(answered) == 15 and set(answered.values()) == {401}, answered
