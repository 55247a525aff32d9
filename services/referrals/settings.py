from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings

DEV_LINK_SECRET = "development-only-partner-link-secret"


class ReferralsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="REFERRALS_", extra="ignore")

    service_name: str = "referrals"
    database_url: str = "sqlite+aiosqlite:///./var/referrals.db"
    port: int = 8003

    link_secret: SecretStr = Field(SecretStr(DEV_LINK_SECRET), description="signs the partners' referral links")
    link_max_age_hours: float = Field(30 * 24, gt=0, description="how long a partner's link stays valid")
    public_base_url: str = Field("http://127.0.0.1:8003", description="where partners reach referrals' pages")
    answer_within_hours: float = Field(72, gt=0, description="a pending referral not answered by then expires")
    expiry_check_seconds: float = Field(60, gt=0)
    seed_directory: bool = Field(True, description="load seed/directory.json into an empty directory at start")
    directory_file: str = ""
    timezone: str = Field("Europe/Brussels", description="opening hours without an offset are in this zone")
    home_region: str = Field("brussels", description="automatic referrals prefer partners in this region")
    youth_services_partner_ref: str = Field("", description="partner that receives minors' referrals, if set")
    housing_search_partner_ref: str = Field("", description="partner that receives housing-search referrals, if set")

    @model_validator(mode="after")
    def _no_default_link_secret_outside_development(self):
        if self.environment != "development" and self.link_secret.get_secret_value() == DEV_LINK_SECRET:
            raise ValueError("REFERRALS_LINK_SECRET must be set outside development")
        return self
