"""A charger's firmware updates and log uploads, version-neutral; the OCPP faces translate the wire format.

UpdateFirmware is answered Accepted; then, at the retrieve date, the charger reports Downloading, Downloaded,
Installing and Installed and reboots (1.6: Installed, then a reboot and a new BootNotification with the new
firmware version; 2.0.1: InstallRebooting, the reboot, a BootNotification with reason FirmwareUpdate, then
Installed). It does not fetch the image: the new version is the location's file name without its extension.
``Misbehaviour.firmware`` makes it fail: "download-fail" ends at DownloadFailed, "install-fail" at
InstallationFailed.

GetDiagnostics / GetLog is answered Accepted with a file name; then it reports Uploading, really uploads a
small generated log file to the location with aiohttp's client (a multipart/form-data POST to the location, or
with ``Misbehaviour.upload = "put"`` a PUT to location + file name) and reports Uploaded, or UploadFailed when
the location is not HTTP(S), cannot be reached or answers an error status.

Each of these runs as one of the charger's own tasks (``_spawn``), so stopping the charger ends it.

Mixed into :class:`~simulators.charger.Charger`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp

from csms.runtime.isotime import iso_millis
from simulators.charger_config import SimChargerConfig
from simulators.clock import SimClock
from simulators.outbox import Outgoing

log = logging.getLogger(__name__)

#: Clock seconds between two steps of an update or an upload (real chargers take minutes; tests need less).
STEP = 0.2
#: Seconds the charger waits for a status notification to go out before it carries on without it.
TELL_TIMEOUT = 10.0
#: Seconds an upload may take in all.
UPLOAD_TIMEOUT = 15.0
#: Longest it waits for a retrieve date in the future (clock seconds).
MAX_WAIT = 86400.0


class ChargerMaintenance:
    """UpdateFirmware and GetDiagnostics / GetLog (the state lives on the charger)."""

    config: SimChargerConfig
    clock: SimClock
    connected: bool
    received: list[tuple[str, dict]]
    #: The firmware version it reports in its BootNotification.
    firmware_version: str
    #: The reason its next 2.0.1 BootNotification gives.
    boot_reason: str
    #: Every log file it uploaded successfully, as (file name, content).
    uploaded: list[tuple[str, bytes]]

    if TYPE_CHECKING:  # provided by ConnectionRunner and ChargerCommands on the charger
        @property
        def id(self) -> str: ...
        def queue(self, item: Outgoing) -> None: ...
        async def power_cycle(self, offline_for: float) -> None: ...
        async def wait_connected(self, connected: bool = True, timeout: float = 5.0) -> None: ...
        def _spawn(self, coro: Any, name: str) -> None: ...

    # ---- firmware ----------------------------------------------------------------------------------

    def update_firmware(self, location: str, retrieve_at: float | None, request_id: int | None) -> str:
        """UpdateFirmware: Accepted, and the update runs from ``retrieve_at`` (None: now)."""
        self._spawn(self._update(location, retrieve_at, request_id), f"{self.id}-firmware")
        return "Accepted"

    async def _update(self, location: str, retrieve_at: float | None, request_id: int | None) -> None:
        if retrieve_at is not None:
            await self.clock.sleep(min(MAX_WAIT, max(0.0, retrieve_at - self.clock.now())))
        fail = self.config.misbehaviour.firmware
        v201 = self.config.version == "ocpp2.0.1"
        for status in ("Downloading", "DownloadFailed" if fail == "download-fail" else "Downloaded"):
            await self._firmware_status(status, request_id)
        if fail == "download-fail":
            return
        await self._firmware_status("Installing", request_id)
        if fail == "install-fail":
            await self._firmware_status("InstallationFailed", request_id)
            return
        self.firmware_version = PurePosixPath(urlsplit(location).path).stem or f"{self.firmware_version}+1"
        await self._firmware_status("InstallRebooting" if v201 else "Installed", request_id)
        log.info("%s: firmware %s installed, rebooting", self.id, self.firmware_version)
        self.boot_reason = "FirmwareUpdate"
        await self.power_cycle(self.config.misbehaviour.reboot_time)
        try:
            await self.wait_connected(timeout=30)
        except TimeoutError:
            return
        finally:
            self.boot_reason = "PowerUp"
        if v201:
            await self._firmware_status("Installed", request_id)

    async def _firmware_status(self, status: str, request_id: int | None) -> None:
        await self.clock.sleep(STEP)
        await self._tell(f"firmware {status}", lambda proto: proto.send_firmware_status(status, request_id))

    # ---- logs ----------------------------------------------------------------------------------------

    def get_log(self, location: str, log_type: str, request_id: int | None) -> tuple[str, str]:
        """GetDiagnostics / GetLog: Accepted and the file name it will upload; the upload runs after."""
        filename = f"{self.id}-{log_type.lower()}-{int(self.clock.now())}.log"
        self._spawn(self._upload(location, filename, log_type, request_id), f"{self.id}-log-upload")
        return "Accepted", filename

    def _log_file(self, log_type: str) -> bytes:
        lines = [f"# {self.id} {log_type} log, {self.config.vendor} {self.config.model}, firmware {self.firmware_version}",
                 f"# generated {iso_millis(self.clock.now())}"]
        lines += [f"received {action}" for action, _ in self.received[-20:]]
        return ("\n".join(lines) + "\n").encode()

    async def _upload(self, location: str, filename: str, log_type: str, request_id: int | None) -> None:
        await self.clock.sleep(STEP)
        await self._tell("log Uploading", lambda proto: proto.send_log_status("Uploading", request_id))
        content = self._log_file(log_type)
        ok = await self._send_file(location, filename, content)
        if ok:
            self.uploaded.append((filename, content))
        status = "Uploaded" if ok else "UploadFailed"
        await self._tell(f"log {status}", lambda proto: proto.send_log_status(status, request_id))

    async def _send_file(self, location: str, filename: str, content: bytes) -> bool:
        if urlsplit(location).scheme not in ("http", "https"):
            log.info("%s: cannot upload to %s: only HTTP(S) is supported", self.id, urlsplit(location).scheme)
            return False
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=UPLOAD_TIMEOUT)) as session:
                if self.config.misbehaviour.upload == "put":
                    request = session.put(location.rstrip("/") + "/" + filename, data=content)
                else:
                    form = aiohttp.FormData()
                    form.add_field("file", content, filename=filename, content_type="text/plain")
                    request = session.post(location, data=form)
                async with request as response:
                    if response.status >= 400:
                        log.info("%s: upload of %s refused: HTTP %s", self.id, filename, response.status)
                        return False
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            log.info("%s: upload of %s failed: %s", self.id, filename, exc)
            return False
        return True

    # ---- telling the central system ----------------------------------------------------------------

    async def _tell(self, name: str, send: Callable[[Any], Awaitable[None]]) -> None:
        """Sends a status notification through the outbox and waits until it went out (or could not): a reboot
        right after must not cut it off. Offline, it is lost, as a real charger's status is."""
        if not self.connected:
            return
        sent: asyncio.Future = asyncio.get_running_loop().create_future()

        async def deliver(proto: Any) -> None:
            try:
                await send(proto)
            finally:
                if not sent.done():
                    sent.set_result(None)

        self.queue(Outgoing(name, deliver))
        try:
            await asyncio.wait_for(sent, TELL_TIMEOUT)
        except TimeoutError:
            log.info("%s: %s not sent within %.0f s", self.id, name, TELL_TIMEOUT)
