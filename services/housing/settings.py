from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class HousingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HOUSING_", extra="ignore")

    service_name: str = "housing"
    database_url: str = "sqlite+aiosqlite:///./var/housing.db"
    port: int = 8002
    stay_months: int = 3
    seed_places: bool = True
    seed_file: str = ""
