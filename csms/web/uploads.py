"""Chargers' log uploads, received and listed: the routes around :mod:`csms.storage.uploads`.

``PUT``/``POST /upload/{station}/{token}/{filename}`` takes the body as the file; ``POST
/upload/{station}/{token}/`` also takes ``multipart/form-data`` (what most chargers send for GetDiagnostics
over HTTP), storing each file part under its own name. There is no bearer token here, chargers cannot send
one: the token in the path is the credential (:mod:`csms.operations.upload_grants`), valid for one station
and a limited time. Answers: 201 stored; 400 a file name with a path in it; 403 the URL expired; 404 an
unknown station or token; 413 over ``[http] max_upload_size`` (nothing kept); 503 too many uploads at once.

The operator reads what arrived with the bearer token like any other API read:
``GET /api/stations/{station}/uploads`` lists a station's files, ``GET /api/stations/{station}/uploads/{name}``
downloads one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any
from urllib.parse import unquote

from aiohttp import ClientPayloadError, HttpVersion11, web
from aiohttp.multipart import BodyPartReader

from csms.config import HttpConfig
from csms.operations.upload_grants import UploadGrants, Verdict, shown
from csms.storage.uploads import BadName, UploadFolder, safe_name

log = logging.getLogger("csms.web.uploads")

CHUNK = 64 * 1024
#: Uploads received at once; more wait for none of them but get 503 (chargers retry: GetDiagnostics retries).
MAX_CONCURRENT = 8


class TooLarge(Exception):
    pass


def _answer(data: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(data, status=status, headers={"Cache-Control": "no-store"})


class UploadRoutes:
    """The upload, listing and download routes, for the stations of the config."""

    def __init__(self, grants: UploadGrants | None, cfg: HttpConfig, stations: Collection[str]):
        self.grants = grants
        self.folder = UploadFolder(cfg.upload_dir)
        self.max_size = cfg.max_upload_size
        self.stations = stations
        self._active = 0

    def routes(self) -> list[web.RouteDef]:
        receive = [web.route(m, p, self.receive, expect_handler=self.expect) for m in ("PUT", "POST")
                   for p in ("/upload/{station_id}/{token}", "/upload/{station_id}/{token}/",
                             "/upload/{station_id}/{token}/{filename}")]
        return [*receive, web.get("/api/stations/{station_id}/uploads", self.listing),
                web.get("/api/stations/{station_id}/uploads/{filename}", self.download)]

    # -- receiving ---------------------------------------------------------------------------------

    def _refusal(self, request: web.Request) -> web.Response | None:
        """Why the upload is refused before its body is read (None: go ahead)."""
        sid, token = request.match_info["station_id"], request.match_info["token"]
        verdict = self.grants.check(sid, token) if self.grants is not None and sid in self.stations else Verdict.UNKNOWN
        if verdict is not Verdict.VALID:
            # The station id is the client's text: %r; the token is a secret: its first characters only.
            log.info("upload for %r from %s refused: %s token %s", sid, request.remote, verdict.value, shown(token))
            if verdict is Verdict.EXPIRED:
                return _answer({"error": "this upload URL has expired; send get-logs again for a new one"}, 403)
            return _answer({"error": "no such upload URL"}, 404)
        if request.content_length is not None and request.content_length > self.max_size:
            return self._too_large(sid, request.content_length)
        if self._active >= MAX_CONCURRENT:
            return web.json_response({"error": "too many uploads at once; retry later"}, status=503,
                                     headers={"Retry-After": "30"})
        return None

    async def expect(self, request: web.Request) -> web.Response | None:
        """``Expect: 100-continue`` (curl and many chargers' HTTP clients send it before a big body): the
        refusal comes before the body is sent, not after."""
        if request.version != HttpVersion11 or request.headers.get("Expect", "").lower() != "100-continue":
            return None
        refusal = self._refusal(request)
        if refusal is None:
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return refusal

    async def receive(self, request: web.Request) -> web.Response:
        sid = request.match_info["station_id"]
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        self._active += 1
        try:
            stored = await self._receive(request, sid)
        except BadName as exc:
            log.info("upload for %r refused: %s", sid, exc)
            return _answer({"error": f"{exc}; name the file without a path, e.g. diagnostics.zip"}, 400)
        except TooLarge:
            return self._too_large(sid, None)
        except (ConnectionError, ClientPayloadError, asyncio.IncompleteReadError) as exc:
            # The charger went away mid-upload (nothing of it is kept); it reports UploadFailed or retries.
            log.info("upload for %r cut short: %s", sid, exc)
            return _answer({"error": "the upload was cut short"}, 400)
        finally:
            self._active -= 1
        for name, size in stored:
            log.info("%r: received upload %r (%d bytes, token %s)", sid, name, size,
                     shown(request.match_info["token"]))
        return _answer({"station": sid, "files": [{"name": n, "size": s} for n, s in stored]}, 201)

    def _too_large(self, sid: str, size: int | None) -> web.Response:
        log.info("upload for %r refused: %s bytes, over max_upload_size %d", sid, size or "more than", self.max_size)
        return _answer({"error": f"the file is over [http] max_upload_size ({self.max_size} bytes)"}, 413)

    async def _receive(self, request: web.Request, sid: str) -> list[tuple[str, int]]:
        url_name = request.match_info.get("filename")
        budget = [self.max_size]  # what the whole request may still carry
        if request.method == "POST" and request.content_type.startswith("multipart/"):
            stored = []
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader) or (part.filename is None and url_name is None):
                    continue  # a form field or nested multipart: not a file
                # Some clients (aiohttp's among them) percent-encode the name in Content-Disposition.
                name = safe_name(unquote(part.filename) if part.filename else url_name or "")
                stored.append((name, await self._store(sid, name, lambda p=part: p.read_chunk(CHUNK), budget)))
            if not stored:
                raise BadName("the multipart body holds no file part (a part with a filename)")
            return stored
        name = safe_name(url_name or request.query.get("filename") or time.strftime("upload-%Y%m%dT%H%M%SZ.bin",
                                                                                       time.gmtime()))
        return [(name, await self._store(sid, name, lambda: request.content.read(CHUNK), budget))]

    async def _store(self, sid: str, name: str, read: Callable[[], Awaitable[bytes]], budget: list[int]) -> int:
        writer = await self.folder.writer(sid, name)
        try:
            while chunk := await read():
                budget[0] -= len(chunk)
                if budget[0] < 0:
                    raise TooLarge()
                await writer.write(chunk)
            return await writer.commit()
        except BaseException:
            await asyncio.shield(writer.abort())
            raise

    # -- reading (bearer token, as every /api read) ---------------------------------------------------

    def _unknown(self, sid: str) -> web.Response | None:
        if sid in self.stations:
            return None
        return _answer({"error": f"no station {sid!r}; GET /api/chargers lists them"}, 404)

    async def listing(self, request: web.Request) -> web.Response:
        sid = request.match_info["station_id"]
        return self._unknown(sid) or _answer({"station": sid, "files": await self.folder.listing(sid)})

    async def download(self, request: web.Request) -> web.StreamResponse:
        sid, name = request.match_info["station_id"], request.match_info["filename"]
        if (unknown := self._unknown(sid)) is not None:
            return unknown
        path = await self.folder.existing(sid, name)
        if path is None:
            return _answer({"error": f"station {sid!r} has no upload {name!r}; GET /api/stations/{sid}/uploads "
                                     "lists them"}, 404)
        return web.FileResponse(path, headers={"Content-Type": "application/octet-stream", "Cache-Control": "no-store",
                                               "Content-Disposition": f'attachment; filename="{path.name}"'})
