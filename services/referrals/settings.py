from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class ReferralsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="REFERRALS_", extra="ignore")

    service_name: str = "referrals"
    database_url: str = "sqlite+aiosqlite:///./var/referrals.db"
    port: int = 8003
