"""Write an example envelope for every contract version not yet in the corpus.

Run `python -m tests.data.contracts.make_corpus` after adding a contract or raising a
contract's schema version; existing files are never rewritten (they are the history).
"""

import json
import types
import typing
from datetime import UTC, date, datetime
from enum import Enum
from pathlib import Path

from shared.events import REGISTRY, Envelope

HERE = Path(__file__).parent


def example(annotation, name: str):
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return example(next(a for a in typing.get_args(annotation) if a is not type(None)), name)
    if origin in (tuple, list):
        return [example(typing.get_args(annotation)[0], name)]
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return list(annotation)[0].value
    if annotation is bool:
        return True
    if annotation is int:
        return 3
    if annotation is datetime:
        return "2026-01-31T09:30:00+00:00"
    if annotation is date:
        return "2026-04-30"
    if annotation is str:
        return f"{name.split('_')[0][:1].upper()}-0123456789ab" if name.endswith("_ref") else f"example-{name}"
    raise TypeError(f"no example for {name}: {annotation}")


def main() -> None:
    for name, contract in sorted(REGISTRY.items()):
        # the full shape, and the oldest reader-visible shape (required fields only)
        for suffix, required_only in (("", False), (".minimal", True)):
            write(name, contract, suffix, required_only)


def write(name: str, contract, suffix: str, required_only: bool) -> None:
        path = HERE / f"{name}.v{contract.schema_version}{suffix}.json"
        if path.exists():
            return
        payload = {field: example(info.annotation, field) for field, info in contract.model_fields.items()
                   if info.is_required() or not required_only}
        envelope = Envelope(event_id="00000000-0000-4000-8000-000000000001", type=name,
                            schema_version=contract.schema_version, occurred_at=datetime(2026, 1, 31, 9, 30, tzinfo=UTC),
                            correlation_id="00000000-0000-4000-8000-000000000001", producer=contract.producer
                            if contract.producer != "any" else "housing", payload=payload)
        path.write_text(json.dumps(envelope.model_dump(mode="json"), indent=2, sort_keys=True) + "\n")
        print("wrote", path.name)


if __name__ == "__main__":
    main()
