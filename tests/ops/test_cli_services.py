"""The operator's `refuge` commands that act through the services: accounts, places, directory."""

import json
import os
import shutil
import subprocess

import httpx

from ..e2e.helpers import staff_headers


def refuge(*args: str, env: dict, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([shutil.which("refuge") or ".venv/bin/refuge", *args], env={**os.environ, **env},
                          capture_output=True, text=True, input=input, timeout=120)


def test_operators_load_places_exchange_the_directory_and_manage_accounts(stack_factory, tmp_path):
    stack = stack_factory().start(["intake", "housing", "referrals"])
    env = {f"REFUGE_{s.upper()}_URL": stack.url(s) for s in ("intake", "housing", "referrals")}
    env["INTAKE_DATABASE_URL"] = stack.services["intake"].env["INTAKE_DATABASE_URL"]

    places = tmp_path / "places.json"
    places.write_text(json.dumps({"flats": [{"code": "F-NEW", "address": "Rue de test 9, 1000 Bruxelles",
                                             "places": [{"place_ref": "PL-900", "kind": "emergency"},
                                                        {"place_ref": "PL-901", "kind": "post_shelter"}]}]}))
    first = refuge("places", "load", str(places), env=env)
    assert first.returncode == 0, first.stderr
    assert "2 place(s) added" in first.stdout
    again = refuge("places", "load", str(places), env=env)
    assert again.returncode == 0 and "0 place(s) added" in again.stdout
    listed = {p["place_ref"]: p for p in httpx.get(f"{stack.url('housing')}/api/places", headers=staff_headers()).json()}
    assert listed["PL-900"]["kind"] == "emergency" and listed["PL-901"]["kind"] == "post_shelter"

    exported = tmp_path / "directory.json"
    result = refuge("directory", "export", str(exported), env=env)
    assert result.returncode == 0, result.stderr
    organisations = json.loads(exported.read_text())
    assert len(organisations) == 20
    result = refuge("directory", "import", str(exported), env=env)
    assert result.returncode == 0, result.stderr
    result = refuge("directory", "export", str(tmp_path / "again.json"), env=env)
    assert json.loads((tmp_path / "again.json").read_text()) == organisations

    stopped = {**env, "REFUGE_HOUSING_URL": "http://127.0.0.1:9"}
    unreachable = refuge("places", "load", str(places), env=stopped)
    assert unreachable.returncode == 3 and "unreachable" in unreachable.stderr

    created = refuge("accounts", "create", "ops-test-admin", "--role", "administrator", env=env,
                     input="a long enough passphrase\na long enough passphrase\n")
    assert created.returncode == 0, created.stdout + created.stderr
    listing = refuge("accounts", "list", env=env)
    assert "ops-test-admin" in listing.stdout
