from services.intake.store import PersonKey
from shared.migrations import run_env

run_env("intake_keys", [PersonKey.__table__])
