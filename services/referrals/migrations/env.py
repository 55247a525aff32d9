from services.referrals.store import TABLES
from shared.messaging.tables import MESSAGING_TABLES
from shared.migrations import run_env

run_env("referrals", [*MESSAGING_TABLES, *TABLES])
