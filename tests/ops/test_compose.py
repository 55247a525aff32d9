"""The production compose file is valid, and refuses to start without its required settings."""

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = {
    "INTAKE_REDIS_PASSWORD": "ri", "HOUSING_REDIS_PASSWORD": "rh", "REFERRALS_REDIS_PASSWORD": "rr",
    "NOTIFY_REDIS_PASSWORD": "rn", "OPS_REDIS_PASSWORD": "ro", "POSTGRES_PASSWORD": "p", "INTAKE_DB_PASSWORD": "i", "HOUSING_DB_PASSWORD": "h",
    "REFERRALS_DB_PASSWORD": "f", "NOTIFY_DB_PASSWORD": "n", "PUBLIC_BASE_URL": "https://console.example",
    "MAIL_FROM": "system@refuge.example", "SOCIAL_COORDINATOR_EMAIL": "coordination@refuge.example",
    "REFUGE_AUTH_SECRET": "s" * 40, "REFERRALS_LINK_SECRET": "l" * 40, "PARTNER_BASE_URL": "https://partners.example",
    "HOUSING_STAFF_EMAIL": "logistics@refuge.example",
    "INTAKE_KEY_RING": "k1:" + "A" * 43 + "=", "INTAKE_SEARCH_KEY": "s" * 40,
}


def compose(env: dict, *args: str) -> subprocess.CompletedProcess:
    binary = shutil.which("docker-compose")
    assert binary, "Debian's docker-compose is needed: `make system-deps` installs it"
    clean = {k: v for k, v in os.environ.items() if k not in REQUIRED}
    return subprocess.run([binary, "-f", "docker-compose.yml", *args], cwd=ROOT, env={**clean, **env},
                          capture_output=True, text=True, timeout=60)


def test_compose_file_is_valid_with_its_required_settings():
    result = compose(REQUIRED, "config", "-q")
    assert result.returncode == 0, result.stderr


def test_compose_refuses_a_missing_required_setting():
    for missing in ("HOUSING_REDIS_PASSWORD", "HOUSING_DB_PASSWORD", "PUBLIC_BASE_URL", "REFUGE_AUTH_SECRET",
                    "REFERRALS_LINK_SECRET"):
        env = {k: v for k, v in REQUIRED.items() if k != missing}
        result = compose(env, "config", "-q")
        assert result.returncode != 0
        assert missing in result.stderr


def test_every_service_runs_from_the_one_image_with_a_healthcheck():
    import yaml

    result = compose(REQUIRED, "config")
    config = yaml.safe_load(result.stdout)
    for name in ("intake", "housing", "referrals", "notify"):
        service = config["services"][name]
        assert service["command"][-1] == name
        assert "healthcheck" in service
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert service["environment"]["REFUGE_ENVIRONMENT"] == "production"
        assert service["environment"]["REFUGE_AUTH_SECRET"] == REQUIRED["REFUGE_AUTH_SECRET"]
    assert "--appendonly" in config["services"]["redis"]["command"]


def test_the_development_override_is_valid_and_never_part_of_production():
    result = compose(REQUIRED, "-f", "docker-compose.override.yml", "config", "-q")
    assert result.returncode == 0, result.stderr
    import yaml

    merged = yaml.safe_load(compose(REQUIRED, "-f", "docker-compose.override.yml", "config").stdout)
    assert merged["services"]["notify"]["environment"]["REFUGE_ENVIRONMENT"] == "development"
    assert merged["services"]["notify"]["environment"]["NOTIFY_SMTP_HOST"] == "mailcatcher"
    production = yaml.safe_load(compose(REQUIRED, "config").stdout)
    assert production["services"]["notify"]["environment"]["REFUGE_ENVIRONMENT"] == "production"
