from typing import Literal

from pydantic import EmailStr, Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class IntakeSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INTAKE_", extra="ignore")

    service_name: str = "intake"
    database_url: str = "sqlite+aiosqlite:///./var/intake.db"
    port: int = 8001
    youth_min_age: int = 18
    youth_max_age: int = 25
    minor_follow_up_days: int = Field(7, ge=1, le=90, description="days until a minor's referral is followed up")
    timezone: str = Field("Europe/Brussels", description="the refuge's day: today's queue and ages follow it")
    public_base_url: str = "http://127.0.0.1:8001"
    social_coordinator_email: EmailStr = "coordination@refuge.example"
    # Other services' APIs, called server-side by the console with the staff member's own token.
    housing_url: str = "http://127.0.0.1:8002"
    referrals_url: str = "http://127.0.0.1:8003"
    notify_url: str = "http://127.0.0.1:8004"
    upstream_timeout_seconds: float = Field(5.0, gt=0, le=60)
    console_default_language: Literal["fr", "nl", "en"] = "fr"
    # Cost of the argon2id password hash; lower only where speed matters more than brute-force cost (tests).
    argon2_time_cost: int = Field(3, ge=1, le=20)
    argon2_memory_kib: int = Field(65536, ge=1024, le=1048576)
    counters_cache_seconds: float = Field(60.0, ge=0, description="public counters are recomputed at most this often")
