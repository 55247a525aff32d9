from services.intake.store import TABLES
from shared.messaging.tables import MESSAGING_TABLES
from shared.migrations import run_env

run_env("intake", [*MESSAGING_TABLES, *TABLES])
