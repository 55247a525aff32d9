from services.housing.store import TABLES
from shared.messaging.tables import MESSAGING_TABLES
from shared.migrations import run_env

run_env("housing", [*MESSAGING_TABLES, *TABLES])
