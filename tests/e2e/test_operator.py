"""An operator's day against ``csms serve`` as a process, through the CLI as from a shell: a lost card is
blocked before its car arrives, a customer without a card is started remotely and stopped, a charger is rebooted.
The fuse holds throughout, and the rebooted charger comes back under control."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import urllib.request

import pytest

from tests.e2e.harness import READ_TOKEN, SLOWEST_EV, ChargerSpec, SiteSpec, running_site

pytestmark = pytest.mark.e2e


async def csms(*args: str) -> tuple[int, str, str]:
    env = {**os.environ}
    env.pop("CSMS_OPERATOR_TOKEN", None)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "csms.runtime.cli", *args, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    return proc.returncode, out.decode(), err.decode()


def api(rig, path: str) -> dict:
    assert rig.cfg.http is not None
    req = urllib.request.Request(f"http://127.0.0.1:{rig.cfg.http.port}{path}",
                                 headers={"Authorization": f"Bearer {READ_TOKEN}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


async def test_an_operators_day_through_csms_serve(tmp_path):
    spec = SiteSpec([ChargerSpec("CP1", "ocpp1.6"), ChargerSpec("CP2", "ocpp2.0.1")], http=True)

    def cards(sc):
        sc.id_tag = None if sc.id == "CP1" else "CARD-7"  # CP1's customer has no card
        return sc

    async with running_site(tmp_path, spec, tweak=cards) as rig:
        cfg = str(rig.config_path)
        code, out, err = await csms("token", "block", "org", "CARD-7", "--config", cfg)
        assert (code, out.strip()) == (0, "org CARD-7 Blocked (runtime)"), err

        arrived = rig.now()
        rig.plug_in_all()
        code, out, err = await csms("station", "remote-start", "CP1", "--id-token", "OPERATOR-1", "--connector", "1",
                                    "--config", cfg)
        assert code == 0 and "CP1 remote-start: Accepted" in out, (out, err)
        await rig.settle(lambda s: sum(s.evs["CP1"]) > 0, SLOWEST_EV + 10, "the remote-started car to charge")
        await rig.hold(2.0)
        assert max(max(s.evs["CP2"]) for s in rig.observer.since(arrived)) == 0.0, "the blocked card charged"

        running = (await asyncio.to_thread(api, rig, "/api/transactions?station=CP1"))["running"]
        assert [t["id_token"] for t in running] == ["OPERATOR-1"]
        code, out, err = await csms("station", "remote-stop", "CP1", "--transaction-id",
                                    str(running[0]["transaction_id"]), "--config", cfg)
        assert code == 0, (out, err)
        await rig.settle(lambda s: sum(s.evs["CP1"]) == 0, 15, "the stopped car to stop drawing")

        code, out, err = await csms("station", "reset", "CP2", "--type", "hard", "--config", cfg)
        assert code == 0 and "Accepted" in out, (out, err)
        cp2 = rig.charger("CP2")
        async with asyncio.timeout(15):
            while cp2.connected:  # it reboots...
                await asyncio.sleep(0.05)
        booted = cp2.boot_status
        await rig.sim.fleet.wait_connected(timeout=30)  # ...and comes back
        charger = await asyncio.to_thread(api, rig, "/api/chargers/CP2")
        assert charger["connected"] and booted is not None, charger
        for _ in range(60):  # set up again after its new boot: its fallback profile installed
            if (await asyncio.to_thread(api, rig, "/api/chargers/CP2"))["control"] == "controlled":
                break
            await asyncio.sleep(0.5)
        else:
            raise AssertionError(f"CP2 not controlled again after its reset: {charger}")

        events = await asyncio.to_thread(api, rig, "/api/events?kind=operator_command&limit=10")
        assert sorted(e["station_id"] for e in events) == ["CP1", "CP1", "CP2"]
        assert rig.observer.worst(arrived) <= spec.fuse, rig.observer.overshoot(spec.fuse, arrived)


#: Every command an operator has, as from a shell, with what the simulated charger answers on each version.
#: (remote-start/-stop and reset are in the scenario above, set/clear-charging-profile in the cap scenario below.)
SWEEP = [
    (("trigger-message", "--message", "Heartbeat"), "Accepted", "Accepted"),
    (("get-configuration", "--key", "{hb_key}"), "Accepted", "Accepted"),
    (("change-configuration", "--key", "{hb_key}", "--value", "120"), "Accepted", "Accepted"),
    (("clear-cache",), "Accepted", "Accepted"),
    (("data-transfer", "--vendor-id", "FuseGuard", "--message-id", "Echo", "--data", "hello"), "Accepted", "Accepted"),
    (("data-transfer", "--vendor-id", "Someone"), "UnknownVendorId", "UnknownVendorId"),
    (("get-base-report",), None, "Accepted"),
    (("send-local-list",), "Accepted", "Accepted"),
    (("get-local-list-version",), "Accepted", "Accepted"),
    (("reserve", "--id-token", "RES-0", "--connector", "1"), "Accepted", "Accepted"),
    (("cancel-reservation", "--reservation-id", "1"), "Accepted", "Accepted"),
    (("reserve", "--id-token", "RES-1", "--connector", "1"), "Accepted", "Accepted"),
    (("get-composite-schedule", "--connector", "1", "--duration", "60"), "Accepted", "Accepted"),
    (("get-charging-profiles",), None, "Accepted"),
    (("get-logs",), "Accepted", "Accepted"),
    (("change-availability", "--availability", "Inoperative", "--connector", "1"), "Accepted", "Accepted"),
    (("change-availability", "--availability", "Operative", "--connector", "1"), "Accepted", "Accepted"),
    (("unlock", "--connector", "1"), "Unlocked", "Unlocked"),
    (("update-firmware", "--location", "https://fw.example.com/charger-9.9.bin"), "Accepted", "Accepted"),  # reboots
]


@pytest.mark.parametrize("version", ["ocpp1.6", "ocpp2.0.1"])
async def test_every_operator_command_through_csms_serve(tmp_path, version):
    """``csms serve`` as a process and ``csms station`` as processes: each command reaches the simulated
    charger and its answer comes back with the CLI's exit code (0 accepted, 1 refused, 2 not for this
    version), and each is in the event log."""
    spec = SiteSpec([ChargerSpec("CP1", version)], http=True)
    hb_key = "HeartbeatInterval" if version == "ocpp1.6" else "OCPPCommCtrlr.HeartbeatInterval"
    async with running_site(tmp_path, spec) as rig:
        cfg = str(rig.config_path)
        for args, answer16, answer201 in SWEEP:
            expected = answer16 if version == "ocpp1.6" else answer201
            argv = [a.format(hb_key=hb_key) for a in args]
            code, out, err = await csms("station", argv[0], "CP1", *argv[1:], "--config", cfg)
            if expected is None:
                assert code == 2 and "1.6" in err, (argv, out, err)
                continue
            assert f"CP1 {argv[0]}: {expected}" in out, (argv, out, err)
            assert code == (0 if expected in ("Accepted", "Unlocked") else 1), (argv, out, err)
        # What the commands left behind, as the operator view shows it, once the new firmware has booted.
        for _ in range(150):
            charger = await asyncio.to_thread(api, rig, "/api/chargers/CP1")
            if (charger["firmware_status"] or {}).get("status") == "Installed" and charger["connected"]:
                break
            await asyncio.sleep(0.1)
        assert [r["id_token"] for r in charger["reservations"]] == ["RES-1"]
        assert charger["log_status"]["status"] == "Uploaded" and charger["firmware_status"]["status"] == "Installed", \
            charger
        settings = (await asyncio.to_thread(api, rig, "/api/chargers/CP1/configuration"))["settings"]
        assert {s["key"]: s["value"] for s in settings}[hb_key] == "120"
        for _ in range(100):  # the charger uploads its log a moment after answering
            uploads = await asyncio.to_thread(api, rig, "/api/stations/CP1/uploads")
            if uploads.get("files"):
                break
            await asyncio.sleep(0.1)
        assert uploads.get("files"), uploads
        events = await asyncio.to_thread(api, rig, "/api/events?kind=operator_command&limit=100")
        assert len(events) == len(SWEEP), [json.loads(e["detail"]) if isinstance(e["detail"], str) else e["detail"]
                                           for e in events]


async def test_an_operators_cap_lowers_one_car_and_the_other_gets_what_it_frees(tmp_path):
    """Two cars share a 40 A fuse (10/8/12 A of other load) at ``csms serve``'s defaults. The operator caps CP1
    at 8 A with ``csms station set-charging-profile``: CP1's car comes down to 8 A, CP2's gets what that frees,
    the fuse holds; ``clear-charging-profile`` gives CP1 its share back."""
    spec = SiteSpec([ChargerSpec("CP1", "ocpp1.6"), ChargerSpec("CP2", "ocpp2.0.1")], http=True)
    async with running_site(tmp_path, spec) as rig:
        cfg = str(rig.config_path)
        arrived = rig.now()
        rig.plug_in_all()
        await rig.settle(lambda s: min(s.evs["CP1"]) > 6 and min(s.evs["CP2"]) > 6, SLOWEST_EV + 30,
                         "both cars charging")
        await rig.hold(10.0)
        shared = max(rig.observer.sample().evs["CP2"])

        code, out, err = await csms("station", "set-charging-profile", "CP1", "--limit", "8", "--config", cfg)
        assert code == 0 and "CP1 set-charging-profile: Accepted" in out, (out, err)
        await rig.settle(lambda s: max(s.evs["CP1"]) <= 8.05, 20, "CP1's car down to its 8 A cap")
        down = rig.now()
        await rig.settle(lambda s: max(s.evs["CP2"]) > shared + 1, 60, "CP2's car taking what the cap frees")
        await rig.hold(5.0)
        assert max(max(s.evs["CP1"]) for s in rig.observer.since(down)) <= 8.05  # and it stays there

        code, out, err = await csms("station", "clear-charging-profile", "CP1", "--config", cfg)
        assert code == 0, (out, err)
        await rig.settle(lambda s: max(s.evs["CP1"]) > 9, 60, "CP1's car back above the cap")
        assert rig.observer.worst(arrived) <= spec.fuse, rig.observer.overshoot(spec.fuse, arrived)
