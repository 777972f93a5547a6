"""The rules behind chargers' uploads, without a server: upload grants (one station, limited time, revocable,
kept only as hashes) and the file names a charger may give."""

from __future__ import annotations

import pytest

from csms.ocpp.operator import _without_credentials
from csms.operations.upload_grants import MAX_GRANTS, UploadGrants, Verdict, shown
from csms.storage.uploads import BadName, UploadFolder, safe_name, station_folder


class Clock:
    def __init__(self) -> None:
        self.now = 1_795_000_000.0

    def __call__(self) -> float:
        return self.now


def test_grants_are_per_station_expire_and_can_be_revoked():
    clock = Clock()
    grants = UploadGrants(clock, ttl=600)
    assert grants.issue("CP1") is None  # no endpoint yet: nothing to hand out
    grants.base_url = "https://csms.example.net/ops/"
    a, b = grants.issue("CP1"), grants.issue("CP 2/x")
    assert a.url == f"https://csms.example.net/ops/upload/CP1/{a.token}/" and a.token != b.token
    assert "/upload/CP%202%2Fx/" in b.url and a.expires_at == clock.now + 600
    assert grants.check("CP1", a.token) is Verdict.VALID
    assert grants.check("CP 2/x", a.token) is Verdict.UNKNOWN  # not another station's
    assert grants.check("CP1", a.token + "x") is Verdict.UNKNOWN
    assert a.token not in repr(grants._grants)  # only hashes are kept
    clock.now += 600
    assert grants.check("CP1", a.token) is Verdict.EXPIRED
    grants.revoke(b.token)
    assert grants.check("CP 2/x", b.token) is Verdict.UNKNOWN
    clock.now += 2 * 600 + 1  # long expired grants are forgotten at the next issue
    grants.issue("CP1")
    assert grants.check("CP1", a.token) is Verdict.UNKNOWN
    assert shown(a.token) == a.token[:6] + "…"


def test_grants_are_bounded():
    grants = UploadGrants(Clock(), ttl=600)
    grants.base_url = "http://127.0.0.1:8080"
    first = grants.issue("CP1")
    for _ in range(MAX_GRANTS):
        grants.issue("CP1")
    assert len(grants._grants) == MAX_GRANTS and grants.check("CP1", first.token) is Verdict.UNKNOWN


@pytest.mark.parametrize("name,stored", [
    ("diagnostics.zip", "diagnostics.zip"), ("CP1 log (2).txt", "CP1_log__2_.txt"), (".bashrc", "_bashrc"),
    ("ünïcode.log", "_n_code.log"), ("a" * 300 + ".tar.gz", "a" * 117 + ".gz"),
])
def test_file_names_are_cleaned(name, stored):
    assert safe_name(name) == stored


@pytest.mark.parametrize("name", ["", ".", "..", "../x", "a/b", "a\\b", "/etc/passwd", "x\x00y", "x\ny"])
def test_file_names_with_a_path_are_refused(name):
    with pytest.raises(BadName):
        safe_name(name)


def test_station_folders_and_paths_stay_inside(tmp_path):
    assert station_folder("CP0001") == "CP0001"
    assert station_folder("../..") == station_folder("../..") != "../.."
    assert station_folder("../..").startswith("station-")
    folder = UploadFolder(tmp_path)
    assert folder.path("CP1", "a.log") == (tmp_path / "CP1" / "a.log").resolve()
    with pytest.raises(BadName):
        folder.path("CP1", "../a.log")


def test_locations_are_logged_without_credentials():
    assert _without_credentials("ftp://user:secret@logs.example.com:21/in/") == "ftp://***@logs.example.com:21/in/"
    assert _without_credentials("https://fw.example.com/a.bin") == "https://fw.example.com/a.bin"
