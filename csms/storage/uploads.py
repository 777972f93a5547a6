"""The files chargers upload (diagnostics and security logs), on disk: one folder per station under the
configured ``[http] upload_dir``, and nothing outside it.

A name comes from the charger (the URL or the multipart part), so it is checked before it touches the file
system: a name with a path in it (``/``, ``\\``, ``.``, ``..``) or a control character is refused
(:class:`BadName`, the route's 400); any other character outside ``A-Z a-z 0-9 . _ -`` becomes ``_``; a leading
dot too (no hidden files: the folder's own partial files start with one). The resolved path is checked to
lie in the station's folder all the same.

Writes never block the event loop: a :class:`FileWriter` buffers what the route reads and hands it to a
worker thread (``asyncio.to_thread``) a megabyte at a time, into a hidden partial file that is renamed to
its name only once complete (an upload cut short or refused as too large leaves nothing behind). A new file
of the same name replaces the old one (a charger retrying its upload).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import secrets
from pathlib import Path
from typing import Any, BinaryIO

#: Longest name kept (longer ones are cut, keeping their extension).
MAX_NAME = 120
#: Bytes handed to the writer thread at once.
FLUSH_AT = 1024 * 1024
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_PLAIN_STATION = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")
PARTIAL_PREFIX = ".partial-"


class BadName(ValueError):
    """A file name the charger gave that names a path, not a file."""


def safe_name(name: str) -> str:
    """``name`` as it is stored; :class:`BadName` when it tries to leave the station's folder."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or any(ord(ch) < 32 for ch in name):
        raise BadName(f"file name {name!r} is not a plain file name (no path, no control characters)")
    cleaned = _UNSAFE.sub("_", name)
    if cleaned.startswith("."):
        cleaned = "_" + cleaned[1:]
    if len(cleaned) > MAX_NAME:
        stem, dot, ext = cleaned.rpartition(".")
        ext = ext[:16] if dot and stem else ""
        cleaned = cleaned[: MAX_NAME - len(ext) - 1] + "." + ext if ext else cleaned[:MAX_NAME]
    return cleaned


def station_folder(station_id: str) -> str:
    """The station's folder name: its id when that is a plain name, else a stable digest of it."""
    if _PLAIN_STATION.fullmatch(station_id):
        return station_id
    return "station-" + hashlib.sha256(station_id.encode()).hexdigest()[:16]


class UploadFolder:
    """``root``/<station>/<file>; every method that touches the disk runs it in a worker thread."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, station_id: str, name: str) -> Path:
        """Where ``name`` (already :func:`safe_name`) of ``station_id`` lives; never outside its folder."""
        folder = (self.root / station_folder(station_id)).resolve()
        path = (folder / name).resolve()
        if path.parent != folder:
            raise BadName(f"file name {name!r} leaves the station's folder")
        return path

    async def writer(self, station_id: str, name: str) -> FileWriter:
        """An open :class:`FileWriter` for ``name`` (a :func:`safe_name`) of ``station_id``."""
        final = self.path(station_id, name)
        partial = final.with_name(PARTIAL_PREFIX + secrets.token_hex(8))

        def open_partial() -> BinaryIO:
            final.parent.mkdir(parents=True, exist_ok=True)
            return open(partial, "xb")  # noqa: SIM115 - closed by FileWriter.commit / abort

        return FileWriter(await asyncio.to_thread(open_partial), partial, final)

    async def listing(self, station_id: str) -> list[dict[str, Any]]:
        """The station's files, newest first: name, size (bytes), modified (epoch s)."""
        folder = self.root / station_folder(station_id)

        def scan() -> list[dict[str, Any]]:
            if not folder.is_dir():
                return []
            out = []
            with os.scandir(folder) as entries:
                for e in entries:
                    if e.name.startswith(".") or not e.is_file(follow_symlinks=False):
                        continue
                    st = e.stat(follow_symlinks=False)
                    out.append({"name": e.name, "size": st.st_size, "modified": st.st_mtime})
            return sorted(out, key=lambda f: (-f["modified"], f["name"]))

        return await asyncio.to_thread(scan)

    async def existing(self, station_id: str, name: str) -> Path | None:
        """The stored file ``name`` of ``station_id``, or None (also for names that are not plain)."""
        try:
            path = self.path(station_id, safe_name(name))
        except BadName:
            return None
        if name != path.name:
            return None  # a name that had to be cleaned was never stored under that name
        ok = await asyncio.to_thread(lambda: path.is_file() and not path.is_symlink())
        return path if ok else None


class FileWriter:
    """One file being received: :meth:`write` chunks, then :meth:`commit` (or :meth:`abort`)."""

    def __init__(self, file: BinaryIO, partial: Path, final: Path):
        self._file = file
        self._partial = partial
        self.final = final
        self._buffer = bytearray()
        self.size = 0

    async def write(self, chunk: bytes) -> None:
        self._buffer += chunk
        self.size += len(chunk)
        if len(self._buffer) >= FLUSH_AT:
            await self._flush()

    async def _flush(self) -> None:
        data, self._buffer = bytes(self._buffer), bytearray()
        if data:
            await asyncio.to_thread(self._file.write, data)

    async def commit(self) -> int:
        """Writes what is buffered, syncs, and gives the file its name; returns its size."""
        await self._flush()

        def finish() -> None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self._partial, self.final)

        await asyncio.to_thread(finish)
        return self.size

    async def abort(self) -> None:
        """Drops the partial file (the upload failed or was refused)."""
        def drop() -> None:
            self._file.close()
            self._partial.unlink(missing_ok=True)

        await asyncio.to_thread(drop)
