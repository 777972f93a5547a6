"""Polling one meter over Modbus TCP with its register map.

pymodbus' client can reconnect by itself, but it retries forever without telling us; here the client is
created with ``reconnect_delay=0`` and ``retries=0`` and :func:`poll_meter` owns the loop: connect, poll
every ``poll_interval``, and on any failure close, report the meter's source as down, wait with
exponential backoff and connect again. pymodbus awaits through ``asyncio.wait_for``, which on Python 3.11 can
swallow our cancellation (:mod:`meter_gateway.tasks`), so the loop checks for a lost one before each wait.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from .backoff import READINGS_RETRY_MAX, Backoff
from .config import MeterConfig
from .registers import RegisterMap
from .tasks import raise_if_cancel_requested

log = logging.getLogger(__name__)


class ReadFailed(Exception):
    """A poll that produced no values; ``kind`` is the counter it goes to."""

    def __init__(self, kind: str, detail: str):
        self.kind, self.detail = kind, detail
        super().__init__(f"{kind}: {detail}")


def make_client(meter: MeterConfig) -> AsyncModbusTcpClient:
    return AsyncModbusTcpClient(meter.host, port=meter.port, timeout=meter.timeout, retries=0, reconnect_delay=0)


async def read_registers(client: AsyncModbusTcpClient, regmap: RegisterMap, unit: int) -> dict[str, float]:
    """One poll: every read block of the map, decoded. Raises :class:`ReadFailed` or ``ModbusException``."""
    words: dict[tuple[str, int], int] = {}
    for block in regmap.read_blocks():
        read = client.read_input_registers if block.function == "input" else client.read_holding_registers
        rr = await read(block.address, count=block.count, device_id=unit)
        if rr.isError():
            code = getattr(rr, "exception_code", "?")
            raise ReadFailed(
                "modbus_exception",
                f"device {unit} answered exception code {code} to {block.function} registers "
                f"{block.address}..{block.address + block.count - 1} (is profile {regmap.name!r} right for this meter?)",
            )
        if len(rr.registers) < block.count:
            raise ReadFailed("read_error", f"short answer: {len(rr.registers)} of {block.count} registers")
        for i, word in enumerate(rr.registers[: block.count]):
            words[(block.function, block.address + i)] = word
    return regmap.decode(words)


async def poll_meter(
    meter: MeterConfig,
    regmap: RegisterMap,
    on_values: Callable[[Mapping[str, float]], None],
    on_error: Callable[[str, str], None],
    on_connected: Callable[[], None],
    backoff: Backoff | None = None,
) -> None:
    """Polls ``meter`` until cancelled, handing each decoded poll to ``on_values``.

    ``on_error(kind, detail)`` hears every failure (kinds: connect_failed, read_error, modbus_exception);
    ``on_connected`` each successful connection. A Modbus exception answer keeps the connection (the meter
    is there, the map may be wrong); anything else reconnects after a backoff delay.
    """
    backoff = backoff or Backoff(initial=min(0.5, meter.poll_interval), maximum=READINGS_RETRY_MAX)
    where = f"{meter.host}:{meter.port} unit {meter.unit}"
    while True:
        client = make_client(meter)
        try:
            if not await client.connect():
                raise ReadFailed("connect_failed", f"cannot connect to {where} within {meter.timeout:g} s")
            log.info("meter %s: connected to %s (profile %s)", meter.serial, where, regmap.name)
            on_connected()
            backoff.reset()
            while True:
                started = time.monotonic()
                try:
                    values = await read_registers(client, regmap, meter.unit)
                except ReadFailed as exc:
                    if exc.kind != "modbus_exception":
                        raise
                    on_error(exc.kind, exc.detail)
                else:
                    on_values(values)
                raise_if_cancel_requested()
                await asyncio.sleep(max(0.0, meter.poll_interval - (time.monotonic() - started)))
        except ReadFailed as exc:
            on_error(exc.kind, exc.detail)
        except (ModbusException, OSError, asyncio.TimeoutError) as exc:
            on_error("read_error", f"{where}: {exc}")
        except Exception as exc:  # a surprise must not end this meter's polling for good
            log.exception("meter %s: unexpected error polling %s", meter.serial, where)
            on_error("read_error", f"{where}: unexpected {type(exc).__name__}: {exc}")
        finally:
            client.close()
        raise_if_cancel_requested()
        await asyncio.sleep(backoff.next_delay())
