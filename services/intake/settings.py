from pydantic import EmailStr
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class IntakeSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INTAKE_", extra="ignore")

    service_name: str = "intake"
    database_url: str = "sqlite+aiosqlite:///./var/intake.db"
    port: int = 8001
    youth_min_age: int = 18
    youth_max_age: int = 25
    public_base_url: str = "http://127.0.0.1:8001"
    social_coordinator_email: EmailStr = "coordination@refuge.example"
