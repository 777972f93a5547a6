"""The rules behind chargers' uploads, without a server: upload grants (one station, limited time, revocable,
kept only as hashes) and the file names a charger may give."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from csms.config import ConfigError, HttpConfig, load_config
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


def test_http_upload_settings():
    base = {"token": "a" * 20}
    assert HttpConfig(**base).upload_base(8080) == "http://127.0.0.1:8080"
    assert HttpConfig(**base, host="0.0.0.0").upload_base(8080) is None  # no address to give a charger
    assert HttpConfig(**base, host="0.0.0.0", public_url="https://csms.example.net/ops/").upload_base(8080) == \
        "https://csms.example.net/ops"
    for bad in ("ftp://csms.example.net", "http://0.0.0.0:8080", "http://csms.example.net/?x=1", "csms.example.net"):
        with pytest.raises(ValidationError, match="public_url"):
            HttpConfig(**base, public_url=bad)
    with pytest.raises(ValidationError, match="max_upload_size"):
        HttpConfig(**base, max_upload_size=10)


def test_upload_dir_is_relative_to_the_config_and_must_be_a_folder(tmp_path):
    site = tmp_path / "site.toml"
    site.write_text('[http]\ntoken = "aaaaaaaaaaaaaaaaaaaa"\n\n[[organisations]]\nid = "o"\nname = "O"\n')
    assert load_config(site).http.upload_dir == str(tmp_path / "var" / "uploads")
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "uploads").write_text("not a folder")
    with pytest.raises(ConfigError, match="http.upload_dir"):
        load_config(site)
