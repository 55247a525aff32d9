"""Each service's OpenAPI document is committed under docs/openapi/ and kept current."""

import json
from pathlib import Path

from shared.ops import openapi

DOCS = Path(__file__).resolve().parents[2] / "docs" / "openapi"


def test_the_committed_openapi_documents_match_the_services():
    assert openapi.stale() == [], "run `make docs`"


def test_every_service_documents_its_api_under_api_with_a_sign_in():
    for service in openapi.SERVICES:
        document = json.loads((DOCS / f"{service}.json").read_text())
        assert document["openapi"].startswith("3.")
        api_paths = [p for p in document["paths"] if p.startswith("/api/")]
        assert len(api_paths) >= 3, service
