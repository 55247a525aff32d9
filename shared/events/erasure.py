"""Events every service publishes on its own stream."""

from .envelope import ANY_PRODUCER, Event, contract


@contract(ANY_PRODUCER)
class ErasureConfirmed(Event):
    """A service erased everything it held about `person_ref` (GDPR Art. 17), answering ErasureRequested."""

    erasure_ref: str
    person_ref: str
    service: str
    records_erased: int
