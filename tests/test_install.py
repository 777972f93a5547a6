"""Installs are reproducible: the environment is the lock, the scripts use the lock, the ranges admit the lock."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)\s*(?:;([^#]*))?")


def locked(name: str) -> dict[str, str]:
    """``requirements/NAME.lock`` as {canonical name: version}, for what this machine installs (a pin whose
    environment marker excludes it, e.g. a wheel only some machines have, is left out)."""
    pins = {}
    for line in (ROOT / "requirements" / f"{name}.lock").read_text().splitlines():
        match = PIN.match(line)
        if match and (not match[3] or Marker(match[3].strip()).evaluate()):
            pins[canonicalize_name(match[1])] = match[2]
    return pins


def direct_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project.get("optional-dependencies", {})
    return [Requirement(r) for r in project["dependencies"] + extras.get("test", []) + extras.get("fast", [])]


def test_the_locks_pin_something():
    assert len(locked("test")) > 20 and len(locked("runtime")) > 10
    assert set(locked("runtime")) <= set(locked("test"))


@pytest.mark.parametrize("name,version", sorted(locked("test").items()))
def test_every_locked_package_is_installed_at_its_locked_version(name, version):
    try:
        installed = metadata.version(name)
    except metadata.PackageNotFoundError:
        pytest.fail(f"{name} is locked at {version} but not installed: bash scripts/install-test-deps.sh")
    assert installed == version, (f"{name} {installed} is installed, the lock says {version}: reinstall with "
                                  "bash scripts/install-test-deps.sh")


@pytest.mark.parametrize("requirement", direct_requirements(), ids=str)
def test_every_declared_range_admits_its_locked_version(requirement):
    if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
        pytest.skip(f"{requirement.name} is not installed on this machine ({requirement.marker})")
    for lock in ("test", "runtime"):
        version = locked(lock).get(canonicalize_name(requirement.name))
        if version is None:
            assert lock == "runtime", f"{requirement.name} is declared but not in requirements/test.lock"
            continue
        assert requirement.specifier.contains(version, prereleases=True), (
            f"pyproject.toml declares {requirement} but requirements/{lock}.lock pins {version}: "
            "the declared range must say what was tested (refresh with scripts/lock.sh)")


def test_the_install_script_and_ci_use_the_lock():
    install = (ROOT / "scripts" / "install-test-deps.sh").read_text()
    assert re.search(r"pip install .*-c requirements/test\.lock .*-e \"?\.\[test,fast\]", install), install
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"rm -rf \"\$venv\"\s+python3 -m venv \"\$venv\"", ci), "CI must build a fresh venv every run"
    assert "bash scripts/install-test-deps.sh" in ci and "python3 -m pytest" in ci
    lock_script = (ROOT / "scripts" / "lock.sh").read_text()
    assert "piptools compile" in lock_script and "requirements/test.lock" in lock_script
