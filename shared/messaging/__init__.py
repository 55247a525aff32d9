from .consumer import EventConsumer, Handler, Prepared
from .relay import OutboxRelay
from .runtime import ServiceRuntime
from .tables import MESSAGING_TABLES, InboxEntry, OutboxEntry
from .uow import StaleRows, UnitOfWork, UnitOfWorkFactory

__all__ = [
    "MESSAGING_TABLES",
    "EventConsumer",
    "Handler",
    "InboxEntry",
    "OutboxEntry",
    "OutboxRelay",
    "Prepared",
    "ServiceRuntime",
    "StaleRows",
    "UnitOfWork",
    "UnitOfWorkFactory",
]
