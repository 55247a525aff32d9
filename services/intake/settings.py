from typing import Literal

from pydantic import EmailStr, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings

from .keys import DEFAULT_KEYS_DATABASE_URL, DEV_KEY_RING, DEV_SEARCH_KEY, KeyRing


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
    sign_in_max_failures: int = Field(5, ge=1, le=100, description="refused sign-ins before 429, per user name and per address")
    sign_in_window_seconds: int = Field(900, ge=10, le=86400, description="how long a refused sign-in counts")
    # Retention: erase case files closed for longer than this many days (off when unset).
    retention_closed_case_days: int | None = Field(None, ge=1, le=36500)
    retention_check_seconds: float = Field(3600.0, gt=0, description="how often the retention policy is applied")
    # Master keys wrapping each person's data key: `id:base64(32 bytes)`, comma-separated, first active.
    key_ring: SecretStr = SecretStr(DEV_KEY_RING)
    # Where the wrapped data keys live: apart from the data, so a copy of the data store never holds them.
    keys_database_url: str = DEFAULT_KEYS_DATABASE_URL
    # Key of the hashes that find a person by name, phone or e-mail without storing them in clear.
    search_key: SecretStr = SecretStr(DEV_SEARCH_KEY)

    @model_validator(mode="after")
    def _no_development_keys_elsewhere(self):
        KeyRing(self.key_ring.get_secret_value())  # refuses a malformed ring at start
        if self.environment != "development" and (self.key_ring.get_secret_value() == DEV_KEY_RING
                                                  or self.search_key.get_secret_value() == DEV_SEARCH_KEY):
            raise ValueError("INTAKE_KEY_RING and INTAKE_SEARCH_KEY must be set outside development")
        return self
