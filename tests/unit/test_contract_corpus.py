"""Every contract version that ever existed stays readable (issue: upgrades)."""

import json
from pathlib import Path

import pytest

from shared.events import REGISTRY, Envelope

CORPUS = Path(__file__).resolve().parents[1] / "data" / "contracts"
FILES = sorted(CORPUS.glob("*.json"))


def test_the_corpus_holds_every_current_contract_version():
    present = {tuple(f.name.split(".")[:2]) for f in FILES}
    missing = {(n, f"v{c.schema_version}") for n, c in REGISTRY.items()} - present
    assert not missing, f"add examples with `python -m tests.data.contracts.make_corpus`: {sorted(missing)}"


@pytest.mark.parametrize("path", FILES, ids=[f.name for f in FILES])
def test_every_example_in_the_corpus_is_still_read_by_todays_contracts(path):
    envelope = Envelope.model_validate(json.loads(path.read_text()))
    event = envelope.open()
    assert envelope.type == path.name.split(".")[0]
    assert type(event).__name__ == envelope.type
    for field, value in envelope.payload.items():
        if field in type(event).model_fields:
            assert getattr(event, field) is not None or value is None
