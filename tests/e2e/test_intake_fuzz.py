"""Schemathesis fuzzes intake's OpenAPI against the running service: no input may cause a server error,
and every answer matches what the document promises (status codes, content types, bodies)."""

import subprocess
import sys

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
