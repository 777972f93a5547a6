"""What the charger's loops need from its OCPP face (:mod:`simulators.chargepoint16` / ``chargepoint201``).

A structural type, so the version-neutral charger can drive either face without importing them.
"""

from __future__ import annotations

from typing import Protocol

from simulators.connector import Connector, Session


class Face(Protocol):
    async def start(self) -> None:
        """Reads and answers frames until the connection closes."""

    async def send_boot(self) -> tuple[str, float]:
        """BootNotification: the registration status and the heartbeat interval."""

    async def send_heartbeat(self) -> None: ...

    async def send_status(self, conn: Connector) -> None: ...

    async def send_state_change(self, conn: Connector) -> None: ...

    async def send_start(self, conn: Connector, sess: Session, authorize: bool) -> None: ...

    async def send_stop(self, conn: Connector, sess: Session, reason: str, meter_stop: float) -> None: ...

    async def send_meter_values(self, conn: Connector, sess: Session | None, context: str) -> None: ...

    async def send_firmware_status(self, status: str, request_id: int | None) -> None:
        """FirmwareStatusNotification (``status`` in 2.0.1's words; 1.6 has no InstallRebooting)."""

    async def send_log_status(self, status: str, request_id: int | None) -> None:
        """1.6 DiagnosticsStatusNotification / 2.0.1 LogStatusNotification (``status``: Uploading, Uploaded,
        UploadFailed)."""

    async def send_reservation_ended(self, reservation_id: int, status: str) -> None:
        """2.0.1 ReservationStatusUpdate (Expired, Removed); 1.6 has no such message."""
