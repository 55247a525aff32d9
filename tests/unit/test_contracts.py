from datetime import UTC, date, datetime

import pytest
from pydantic import ValidationError

from shared.events import REGISTRY, Envelope
from shared.events.codes import Decision, PlaceKind, Track
from shared.events.housing import PersonAdmitted
from shared.events.intake import RequestAssessed

# Words that would mean a contract carries personal data (brief rule 7).
FORBIDDEN = ("name", "phone", "email", "mail", "address", "birth", "gender", "orientation", "nationality",
             "health", "note", "comment", "text", "asylum", "country")


def test_every_contract_carries_only_references_and_codes():
    for name, contract in REGISTRY.items():
        for field in contract.model_fields:
            assert not any(word in field for word in FORBIDDEN), f"{name}.{field} looks like personal data"
            annotation = str(contract.model_fields[field].annotation)
            assert "dict" not in annotation, f"{name}.{field} is an open structure"


def test_envelope_round_trips_and_records_causation():
    assessed = Envelope.wrap(RequestAssessed(request_ref="R-1", person_ref="P-1", decision=Decision.accommodate,
                                             track=Track.youth, place_kind=PlaceKind.emergency))
    admitted = Envelope.wrap(PersonAdmitted(stay_ref="S-1", person_ref="P-1", place_ref="PL-001",
                                            place_kind=PlaceKind.emergency, starts_on=date(2026, 1, 31),
                                            planned_end=date(2026, 4, 30)), causation=assessed)
    again = Envelope.model_validate_json(admitted.model_dump_json())
    assert again == admitted
    assert again.causation_id == assessed.event_id
    assert again.correlation_id == assessed.correlation_id
    assert again.producer == "housing" and again.schema_version == 1
    assert again.open().planned_end == date(2026, 4, 30)


def test_readers_ignore_unknown_fields():
    env = Envelope.wrap(RequestAssessed(request_ref="R-1", person_ref="P-1", decision=Decision.refer, track=Track.minor))
    data = env.model_dump(mode="json")
    data["added_later"] = 1
    data["payload"]["also_added_later"] = "x"
    opened = Envelope.model_validate(data).open()
    assert opened.decision is Decision.refer


def test_occurred_at_must_carry_a_time_zone():
    env = Envelope.wrap(RequestAssessed(request_ref="R-1", person_ref="P-1", decision=Decision.refer, track=Track.minor))
    data = env.model_dump()
    data["occurred_at"] = datetime(2026, 1, 1, 12, 0)
    with pytest.raises(ValidationError, match="time zone"):
        Envelope.model_validate(data)
    data["occurred_at"] = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert Envelope.model_validate(data).occurred_at.tzinfo is not None


def test_health_needs_never_travel_in_request_assessed_nor_are_read_from_an_older_event():
    assessed = RequestAssessed(request_ref="R-1", person_ref="P-1", decision=Decision.support_only, track=Track.upstream,
                               needs=("mental_health", "housing_search", "physical_health", "legal"))
    assert [str(n) for n in assessed.needs] == ["housing_search", "legal"]
    wire = Envelope.wrap(assessed).model_dump_json()
    assert "health" not in wire
    older = wire.replace('"needs":["housing_search","legal"]', '"needs":["physical_health","housing_search"]')
    assert older != wire
    assert [str(n) for n in Envelope.model_validate_json(older).open().needs] == ["housing_search"]
