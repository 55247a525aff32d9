"""`refuge backup` of a deployment's data, `refuge restore` into new stores and another Redis
server, and a second stack on the restored data: every request, case file, stay, referral and
followed person is there, nothing happened twice, and a new request still flows end to end."""

import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from shared.cli import app
from shared.testing.stack import SERVICES
from tests.e2e.helpers import open_stay, post_request, staff_headers, wait_for

pytestmark = pytest.mark.e2e  # starts the whole stack twice

ROOT = Path(__file__).resolve().parents[2]
REFUGE = Path(sys.executable).parent / "refuge"  # the console script `make install` puts in the venv
runner = CliRunner()


def refuge(*args: str) -> subprocess.CompletedProcess:
    assert REFUGE.exists(), "the `refuge` command is installed by `make install` (pip install -e .)"
    return subprocess.run([str(REFUGE), *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def store_options(urls: dict[str, str]) -> list[str]:
    return [arg for service, url in urls.items() for arg in (f"--{service.replace('_', '-')}-database-url", url)]


def person(i: int, **overrides) -> dict:
    return {"name": f"Backup Person {i}", "email": f"backup.person{i}@example.org",
            "phone": f"+32 470 12 34 5{i}", **overrides}


def followed(referrals_url: str) -> set[str]:
    response = httpx.get(f"{referrals_url}/api/followed", headers=staff_headers(), timeout=5)
    return {f["person_ref"] for f in response.json()}


def referrals_of(referrals_url: str, person_ref: str) -> list[tuple[str, str, str]]:
    response = httpx.get(f"{referrals_url}/api/referrals", params={"person_ref": person_ref},
                         headers=staff_headers(), timeout=5)
    return [(r["referral_ref"], r["category"], r["status"]) for r in response.json()]


def stays_of(housing_url: str, person_ref: str) -> list[dict]:
    stays = httpx.get(f"{housing_url}/api/stays", headers=staff_headers(), timeout=5).json()
    return [s for s in stays if s["person_ref"] == person_ref]


def test_a_backup_restored_into_new_stores_and_redis_holds_every_request_stay_referral_and_followed_person(
        stack_factory, redis_url, namespace, own_redis, tmp_path):
    first = stack_factory().start()
    adults = [post_request(first.url("intake"), **person(i)) for i in range(3)]
    minor_birth = date(date.today().year - 16, 1, 15).isoformat()
    minor = post_request(first.url("intake"), **person(9, date_of_birth=minor_birth))
    assert minor["track"] == "minor"
    requests = [*adults, minor]
    stays = {a["person_ref"]: wait_for(lambda a=a: open_stay(first.url("housing"), a["person_ref"])) for a in adults}
    assert all(stays.values()), first.logs()
    everyone = {r["person_ref"] for r in requests}
    assert wait_for(lambda: everyone <= followed(first.url("referrals"))), first.logs()
    referral = wait_for(lambda: referrals_of(first.url("referrals"), minor["person_ref"]))
    assert referral, first.logs()
    first.stop()

    sources = {s: f"sqlite+aiosqlite:///{first.workdir / (s + '.db')}" for s in SERVICES}
    sources["intake_keys"] = f"sqlite+aiosqlite:///{first.workdir / 'intake-keys.db'}"
    backed_up = refuge("backup", str(tmp_path / "backup"), "--redis-url", redis_url, "--namespace", namespace,
                       *store_options(sources))
    assert backed_up.returncode == 0, backed_up.stderr
    manifest = json.loads((tmp_path / "backup" / "manifest.json").read_text())
    assert manifest["stores"]["housing"]["tables"]["housing_stay"]["rows"] >= len(adults)

    targets = {s: f"sqlite+aiosqlite:///{tmp_path / 'restored' / (s + '.db')}" for s in SERVICES}
    targets["intake_keys"] = f"sqlite+aiosqlite:///{tmp_path / 'restored' / 'intake-keys.db'}"
    restored = refuge("restore", str(tmp_path / "backup"), "--redis-url", own_redis.url, *store_options(targets))
    assert restored.returncode == 0, restored.stderr
    again = runner.invoke(app, ["restore", str(tmp_path / "backup"), "--redis-url", own_redis.url,
                                *store_options(targets)])
    assert again.exit_code == 1 and "not empty" in again.output

    second = stack_factory(redis=own_redis.url, database_urls=targets).start()
    for request in requests:
        response = httpx.get(f"{second.url('intake')}/api/requests/{request['request_ref']}",
                             headers=staff_headers(), timeout=5)
        assert response.status_code == 200, response.text
        assert response.json()["decision"] == request["decision"]
        case_file = httpx.get(f"{second.url('intake')}/api/case-files/{request['person_ref']}",
                              headers=staff_headers(), timeout=5)
        assert case_file.status_code == 200, case_file.text
    for person_ref, stay in stays.items():
        assert [s["stay_ref"] for s in stays_of(second.url("housing"), person_ref)] == [stay["stay_ref"]]
    assert everyone <= followed(second.url("referrals"))
    assert referrals_of(second.url("referrals"), minor["person_ref"]) == referral

    newcomer = post_request(second.url("intake"), **person(7))
    assert wait_for(lambda: open_stay(second.url("housing"), newcomer["person_ref"])), second.logs()
    assert wait_for(lambda: newcomer["person_ref"] in followed(second.url("referrals"))), second.logs()

    # Everything published again after the restore was dropped by the inboxes: still one stay each,
    # and every group has caught up on the restored streams.
    for person_ref, stay in stays.items():
        assert [s["stay_ref"] for s in stays_of(second.url("housing"), person_ref)] == [stay["stay_ref"]]

    def caught_up():
        result = runner.invoke(app, ["streams", "--redis-url", own_redis.url, "--namespace", namespace, "--json"])
        assert result.exit_code == 0, result.output
        groups = [g for s in json.loads(result.output)["streams"] for g in s["groups"]]
        return all(g["exists"] and g["lag"] == 0 and g["pending"] == 0 for g in groups)

    assert wait_for(caught_up, timeout=30, every=1), second.logs()
