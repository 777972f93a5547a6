"""A reload on a running site with simulated chargers and a polled meter: the group's ``socket_enabled`` reaches
the charger's socket, and a changed meter gets a new reader, while every charger keeps its connection and its
session (in-process; the real-process tests are in tests/e2e/test_reload.py)."""

from __future__ import annotations

import tomllib
from typing import Any

import tomli_w

from .site import METER, Rig, running_site, wait_until


def edit(rig: Rig, change) -> None:
    assert rig.config_path is not None
    data: dict[str, Any] = tomllib.loads(rig.config_path.read_text())
    change(data)
    rig.config_path.write_text(tomli_w.dumps(data))


async def reload(rig: Rig) -> tuple[str, ...]:
    result = await rig.app.reloader.reload("test")
    assert result.applied, result.problems
    return result.changes


async def test_socket_enabled_reaches_the_socket_and_a_changed_meter_is_read_anew(tmp_path):
    async with running_site(tmp_path, config_file=True) as rig:
        app = rig.app
        await rig.charging_at_full("CP1")
        sockets = {cid: id(app.server.sessions[cid]) for cid in ("CP1", "CP2")}
        session = app.state.station("CP1").transactions[1].transaction_id
        cp2 = rig.charger("CP2").connectors[1]
        assert cp2.operative

        # CP2's socket follows the group's socket_enabled: off...
        edit(rig, lambda d: (d["chargers"][1].update(socket_connector=1),
                             d["load_balancers"][0].update(socket_enabled=False)))
        assert set(await reload(rig)) == {"chargers changed: CP2", "groups changed: garage"}
        await wait_until(lambda: not cp2.operative, what="CP2's socket out of service")
        await wait_until(lambda: cp2.reported_status == "Unavailable", what="CP2 reporting Unavailable")
        # ...and on again; CP1 (no socket_connector) is not touched and its car charges on.
        edit(rig, lambda d: d["load_balancers"][0].update(socket_enabled=True))
        assert await reload(rig) == ("groups changed: garage",)
        await wait_until(lambda: cp2.operative and cp2.reported_status == "Available", what="CP2 back in service")
        assert rig.charger("CP1").connectors[1].operative and rig.charger_draw("CP1") > 15

        # A changed meter (another poll interval) gets a new reader; readings go on and nothing reconnects.
        reader = app.meters
        edit(rig, lambda d: d["meters"][0].update(poll_interval=0.7))
        assert await reload(rig) == ("meters changed: " + METER,)
        assert app.meters is not reader and app.meters is not None
        since = app.clock()
        await wait_until(lambda: app.last_readings[METER].taken_at > since + 1.0, what="readings from the new reader")
        assert {cid: id(app.server.sessions[cid]) for cid in ("CP1", "CP2")} == sockets
        assert all(c.connected for c in rig.sim.fleet)
        assert app.state.station("CP1").transactions[1].transaction_id == session
