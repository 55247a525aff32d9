from pydantic import EmailStr, Field, field_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings

from .domain import LANGUAGES, parse_clock_window, parse_weekdays


class NotifySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFY_", extra="ignore")

    service_name: str = "notify"
    database_url: str = "sqlite+aiosqlite:///./var/notify.db"
    port: int = 8004

    # e-mail over SMTP
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_timeout: float = Field(10.0, gt=0)
    smtp_starttls: bool = False
    smtp_tls: bool = False
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_validate_certs: bool = True
    smtp_ca_file: str | None = Field(None, description="extra CA bundle (PEM) to trust, e.g. a private relay's")
    mail_from: EmailStr = "refuge-system@refuge.example"
    message_id_domain: str = "refuge.notify"

    # staff recipients
    social_coordinator_email: EmailStr = "coordination@refuge.example"
    housing_staff_email: EmailStr = "logistics@refuge.example"
    staff_language: str = "fr"
    console_url: str = "http://127.0.0.1:8001"

    # webhooks and the referrals service (for a referral's signed partner link)
    webhook_timeout: float = Field(10.0, gt=0)
    referrals_url: str = "http://127.0.0.1:8003"
    referrals_timeout: float = Field(5.0, gt=0)
    consent_purposes: list[str] = Field(["referral"], description="consent purposes that allow personal fields in partner messages")

    # delivery
    max_attempts: int = Field(6, ge=1)
    retry_base_seconds: float = Field(2.0, gt=0)
    retry_max_seconds: float = Field(3600.0, gt=0)
    send_lease_seconds: float = Field(120.0, gt=0, description="a message claimed this long ago and not recorded is sent again")
    send_concurrency: int = Field(4, ge=1)
    sender_poll_seconds: float = Field(1.0, gt=0)
    alert_staff_on_failure: bool = True
    rules_refresh_seconds: float = Field(
        5.0, gt=0, description="how soon a rule changed through another replica applies here (at once on this one)")

    # staff alerts: quiet hours and digests (local time of the refuge)
    timezone: str = "Europe/Brussels"
    quiet_hours: str = Field("", description='e.g. "21:00-07:00"; empty: none')
    digest_at: str = "08:00"
    digest_days: str = "mon,tue,wed,thu,fri,sat,sun"

    # seeds
    seed_rules: bool = True
    seed_partners: str | None = Field(None, description="JSON file of partner recipients loaded at start (existing ones kept)")

    @field_validator("smtp_username", "smtp_password", "smtp_ca_file", "seed_partners", mode="before")
    @classmethod
    def _empty_is_unset(cls, value):
        # compose passes `${SMTP_USERNAME:-}`: an empty value means "none", not "log in with nothing"
        return None if value == "" else value

    @field_validator("staff_language")
    @classmethod
    def _language(cls, value: str) -> str:
        if value not in LANGUAGES:
            raise ValueError(f"must be one of {', '.join(LANGUAGES)}")
        return value

    @field_validator("quiet_hours")
    @classmethod
    def _window(cls, value: str) -> str:
        if value:
            parse_clock_window(value)
        return value

    @field_validator("digest_days")
    @classmethod
    def _days(cls, value: str) -> str:
        parse_weekdays(value)
        return value
