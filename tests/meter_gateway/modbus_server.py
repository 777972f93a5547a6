"""A real pymodbus TCP server on 127.0.0.1 serving one register map with live, changeable values."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from meter_gateway.registers import RegisterMap

_FUNCTIONS = {3: "holding", 4: "input"}


class MeterServer:
    """``async with MeterServer(regmap, values) as srv:`` serves ``regmap.encode(values)`` on ``srv.port``.

    ``set(values)`` changes what the next read returns; ``set_words`` plants raw words (e.g. a NaN);
    ``stop()``/``start()`` restart the server on the same port.
    """

    def __init__(self, regmap: RegisterMap, values: Mapping[str, float], unit: int = 1, port: int = 0):
        self.regmap = regmap
        self.unit = unit
        self.port = port
        self.words = regmap.encode(values)
        self._server: ModbusTcpServer | None = None
        self._task: asyncio.Task[None] | None = None

    def set(self, values: Mapping[str, float]) -> None:
        self.words = self.regmap.encode(values)

    def set_words(self, words: Mapping[tuple[str, int], int]) -> None:
        self.words = {**self.words, **words}

    async def _action(self, function_code, start_address, address, count, registers, set_values):  # noqa: ANN001
        function = _FUNCTIONS.get(function_code)
        for i in range(len(registers)):
            registers[i] = self.words.get((function, start_address + i), registers[i])
        return None

    def _device(self) -> SimDevice:
        blocks = [SimData(b.address, values=[0] * b.count, datatype=DataType.REGISTERS) for b in self.regmap.read_blocks()]
        return SimDevice(id=self.unit, simdata=blocks, action=self._action)

    async def start(self) -> None:
        self._server = ModbusTcpServer(self._device(), address=("127.0.0.1", self.port))
        self._task = asyncio.create_task(self._server.serve_forever())
        for _ in range(200):
            transport = self._server.transport
            if transport is not None and getattr(transport, "sockets", None):
                self.port = transport.sockets[0].getsockname()[1]
                return
            await asyncio.sleep(0.01)
        raise RuntimeError("pymodbus server did not start listening")

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._server = self._task = None

    async def __aenter__(self) -> MeterServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
