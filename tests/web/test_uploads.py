"""The upload endpoint chargers send their log files to, attacked directly: who may upload (a live token for
that very station), where a file may land (its station's folder, nothing else), and how big it may be.

The files' happy path with real simulated chargers is in :mod:`.test_firmware_logs`.
"""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
from yarl import URL

from .site import MAX_UPLOAD, get, running_site, wait_until


async def _send(method: str, url: str, data=None, headers: dict | None = None, expect100: bool = False
                ) -> tuple[int, dict]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
        async with s.request(method, URL(url, encoded=True), data=data, headers=headers or {},
                             expect100=expect100) as r:
            return r.status, await r.json(content_type=None)


def _files(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


async def test_uploads_need_a_live_token_for_that_station(tmp_path):
    async with running_site(tmp_path) as rig:
        uploads = tmp_path / "uploads"
        grant = rig.app.uploads.issue("CP1")
        assert grant.url == f"{rig.base}/upload/CP1/{grant.token}/"
        assert await _send("PUT", grant.url + "a.log", b"hello") == (201, {"station": "CP1", "files": [
            {"name": "a.log", "size": 5}]})
        assert (uploads / "CP1" / "a.log").read_bytes() == b"hello"

        for url in (f"{rig.base}/upload/CP2/{grant.token}/b.log",         # another station's folder
                    f"{rig.base}/upload/CP1/{'x' * 43}/b.log",            # a made-up token
                    f"{rig.base}/upload/NOPE/{grant.token}/b.log",        # not a station of the site
                    f"{rig.base}/upload/CP1/{grant.token[:-1]}/b.log"):   # one character short
            code, body = await _send("PUT", url, b"evil")
            assert code == 404 and body == {"error": "no such upload URL"}, url

        rig.app.uploads.revoke(grant.token)
        assert (await _send("PUT", grant.url + "c.log", b"late"))[0] == 404

        late = rig.app.uploads.issue("CP2")
        clock = rig.app.uploads.clock
        rig.app.uploads.clock = lambda: clock() + rig.app.uploads.ttl + 1  # an hour and a second later
        code, body = await _send("PUT", late.url + "d.log", b"late")
        assert code == 403 and "expired" in body["error"] and "get-logs" in body["error"]
        assert (await _send("PUT", late.url + "d.log", b"late", expect100=True))[0] == 403
        assert _files(uploads) == ["CP1/a.log"]


async def test_file_names_cannot_leave_the_station_folder(tmp_path):
    async with running_site(tmp_path) as rig:
        uploads = tmp_path / "uploads"
        url = rig.app.uploads.issue("CP1").url
        for name in ("..%2F..%2Fescaped.log", "%2E%2E", "a%5C..%5Cb.log", "x%00y.log"):
            code, body = await _send("PUT", url + name, b"evil")
            assert code == 400 and "file name" in body["error"], name
        for bad in ("../../escaped.log", "/etc/cron.d/x", "..", "a\\b"):
            form = aiohttp.FormData()
            form.add_field("file", b"evil", filename=bad)
            code, body = await _send("POST", url, form)
            assert code == 400 and "file name" in body["error"], bad
        # A charger that writes the name as is, unencoded.
        raw = (b'--B\r\nContent-Disposition: form-data; name="file"; filename="../escaped.log"\r\n\r\nevil\r\n'
               b"--B--\r\n")
        code, body = await _send("POST", url, raw, {"Content-Type": "multipart/form-data; boundary=B"})
        assert code == 400 and "file name" in body["error"]
        assert not any("escaped" in f or f.startswith("uploads") for f in _files(tmp_path)), _files(tmp_path)

        # Odd but harmless names are cleaned, not refused; a multipart form field that is no file is skipped.
        form = aiohttp.FormData()
        form.add_field("note", "not a file")
        form.add_field("file", b"diag", filename=".hidden diag (1).zip")
        assert await _send("POST", url, form) == (201, {"station": "CP1", "files": [
            {"name": "_hidden_diag__1_.zip", "size": 4}]})
        fields_only = b'--B\r\nContent-Disposition: form-data; name="note"\r\n\r\nno file\r\n--B--\r\n'
        code, body = await _send("POST", url, fields_only, {"Content-Type": "multipart/form-data; boundary=B"})
        assert code == 400 and "no file part" in body["error"]
        assert _files(uploads) == ["CP1/_hidden_diag__1_.zip"]


async def test_uploads_over_max_upload_size_are_refused_and_not_kept(tmp_path):
    async with running_site(tmp_path) as rig:
        uploads = tmp_path / "uploads"
        url = rig.app.uploads.issue("CP2").url
        code, body = await _send("PUT", url + "big.log", b"x" * (MAX_UPLOAD + 1))  # Content-Length says so
        assert code == 413 and "max_upload_size" in body["error"]
        # With Expect: 100-continue the refusal comes before the body is sent; an accepted one goes on.
        assert (await _send("PUT", url + "big.log", b"x" * (MAX_UPLOAD + 1), expect100=True))[0] == 413
        assert (await _send("PUT", url + "small.log", b"s", expect100=True))[0] == 201
        (uploads / "CP2" / "small.log").unlink()

        async def stream():  # no Content-Length: refused once the bytes read pass the limit
            for _ in range(MAX_UPLOAD // 4096 + 2):
                yield b"y" * 4096
        try:
            code, body = await _send("PUT", url + "streamed.log", stream())
            assert code == 413
        except aiohttp.ClientError as exc:
            print("streamed upload cut off:", exc)  # the server may close while the client still sends
        form = aiohttp.FormData()
        form.add_field("file", b"z" * (MAX_UPLOAD // 2 + 1), filename="one.log")
        form.add_field("file", b"z" * (MAX_UPLOAD // 2 + 1), filename="two.log")
        assert (await _send("POST", url, form))[0] == 413  # the limit is per request, not per part
        assert _files(uploads) == []  # nothing kept, not even a partial file

        assert (await _send("PUT", url + "exact.log", b"e" * MAX_UPLOAD))[0] == 201
        assert _files(uploads) == ["CP2/exact.log"]


async def test_listing_and_download_need_the_token_and_name_real_files(tmp_path):
    async with running_site(tmp_path) as rig:
        url = rig.app.uploads.issue("CP1").url
        assert (await _send("PUT", url + "diag.log", b"contents"))[0] == 201
        assert (await get(rig, "/api/stations/CP1/uploads", token=None))[0] == 401
        assert (await get(rig, "/api/stations/CP1/uploads/diag.log", token=None))[0] == 401
        code, _, text = await get(rig, "/api/stations/CP1/uploads")
        assert code == 200 and [f["name"] for f in json.loads(text)["files"]] == ["diag.log"]
        assert json.loads((await get(rig, "/api/stations/CP2/uploads"))[2]) == {"station": "CP2", "files": []}
        assert (await get(rig, "/api/stations/NOPE/uploads"))[0] == 404
        assert (await get(rig, "/api/stations/CP1/uploads/other.log"))[0] == 404
        assert (await get(rig, "/api/stations/CP2/uploads/diag.log"))[0] == 404   # another station's file
        assert (await get(rig, "/api/stations/CP1/uploads/..%2Fcsms.sqlite"))[0] == 404
        code, headers, text = await get(rig, "/api/stations/CP1/uploads/diag.log")
        assert code == 200 and text == "contents" and headers["Content-Type"] == "application/octet-stream"


async def test_an_upload_cut_short_leaves_nothing(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="csms.web.uploads")
    async with running_site(tmp_path) as rig:
        url = URL(rig.app.uploads.issue("CP1").url + "cut.log")
        reader, writer = await asyncio.open_connection("127.0.0.1", url.port)
        writer.write(f"PUT {url.raw_path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n".encode() + b"a" * 10)
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.close()
        await wait_until(lambda: "cut short" in caplog.text, what="the server to notice")
        assert not [f for f in _files(tmp_path / "uploads") if "cut" in f or "partial" in f]
        assert "Traceback" not in caplog.text
        assert (await _send("PUT", str(url), b"whole"))[0] == 201  # the charger's retry
