"""The image's dependency set installs with pip from the lock file the Dockerfile uses."""

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        if m := re.match(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^\s;]+)", line):
            found[m.group(1).lower().replace("_", "-")] = m.group(3)
    return found


def test_the_dockerfile_installs_the_runtime_lock_which_pins_what_pyproject_pins():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install -r requirements.runtime.lock" in dockerfile
    runtime = pins(ROOT / "requirements.runtime.lock")
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for requirement in declared:
        name, version = re.match(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==(.+)$", requirement).groups()
        assert runtime.get(name.lower().replace("_", "-")) == version, requirement
    assert "pytest" not in runtime and "playwright" not in runtime  # tests stay out of the image


def test_pip_resolves_the_runtime_lock_as_wheels_for_the_image_platform(tmp_path):
    report = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--only-binary=:all:",
         "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_28_x86_64", "--python-version", "3.11",
         "--implementation", "cp", "--target", str(tmp_path / "target"), "--report", str(report),
         "-r", str(ROOT / "requirements.runtime.lock")],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    installed = {i["metadata"]["name"].lower().replace("_", "-"): i["metadata"]["version"]
                 for i in json.loads(report.read_text())["install"]}
    assert installed == pins(ROOT / "requirements.runtime.lock")
