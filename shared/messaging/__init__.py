from .consumer import EventConsumer, Handler
from .relay import OutboxRelay
from .runtime import ServiceRuntime
from .tables import MESSAGING_TABLES, InboxEntry, OutboxEntry
from .uow import UnitOfWork, UnitOfWorkFactory

__all__ = [
    "MESSAGING_TABLES",
    "EventConsumer",
    "Handler",
    "InboxEntry",
    "OutboxEntry",
    "OutboxRelay",
    "ServiceRuntime",
    "UnitOfWork",
    "UnitOfWorkFactory",
]
