"""The passive watch's glue in the central system: the stations' samples and sessions (the SiteState events) and
the mains readings reach the group's correlator, and a finding is one ``wiring_warning`` event, not one per
reading; ``wiring_warning_cleared`` when it no longer shows, and raised again only when it comes back."""

from __future__ import annotations

from typing import Any

from csms.config import parse_config
from csms.domain.state import PhaseSample, SiteState, Transaction
from csms.runtime.wiring_watch import WiringWatch
from meter_gateway.reading import MeterReading

METER = "AG1G"
CFG = {
    "server": {"security_profile": 0},
    "organisations": [{"id": "org", "name": "Org"}],
    "meters": [{"serial": METER, "pin": "87654321", "organisation": "org", "host": "127.0.0.1"}],
    "chargers": [{"id": "CP1", "organisation": "org"}, {"id": "CP2", "organisation": "org", "phase_rotation": "STR"}],
    "load_balancers": [{"id": "garage", "name": "Garage", "organisation": "org", "meter": METER,
                        "chargers": ["CP1", "CP2"], "supply_max_current": 63, "max_current_online": 63,
                        "max_current_offline": 10}],
}


class Events:
    """Storage as the watch uses it: events written in the background (each write runs on a fake database)."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, dict[str, Any]]] = []

    def write_nowait(self, op, *_: Any) -> None:
        class Db:
            def execute(db, sql: str, args: list) -> None:
                import json
                self.rows.append((args[1], json.loads(args[5]) if args[5] else {}))
        op(Db())

    def kinds(self) -> list[str]:
        return [k for k, _ in self.rows]


class Site:
    """CP1 and CP2 with 1-phase cars; the meter's L1 clamp reversed until :meth:`fix`."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.state = SiteState()
        self.events = Events()
        self.cfg = parse_config(CFG)
        self.watch = WiringWatch(lambda: self.cfg, self.state, {}, self.events, lambda: self.now)  # type: ignore[arg-type]
        self.watch.start()
        self.draw = {"CP1": 0.0, "CP2": 0.0}
        self.reversed = True
        self.tx = 0

    def mains(self) -> tuple[float, float, float]:
        l1, l2 = 10.0 + self.draw["CP1"], 8.0 + self.draw["CP2"]  # CP2 is STR: its L1 is building phase S
        return (-l1 if self.reversed else l1, l2, 9.0)

    def run(self, seconds: float) -> None:
        """A reading every second, each charger's sample every 10 s."""
        for _ in range(int(seconds)):
            self.now += 1.0
            current = self.mains()
            self.watch.on_reading(MeterReading(METER, self.now, self.now, current, (230.0,) * 3, None))
            if int(self.now) % 10 == 0:
                for cid, a in self.draw.items():
                    if self.state.station(cid).transactions:
                        self.state.sampled(cid, 1, PhaseSample(self.now, (a, 0.0, 0.0)))

    def session(self, cid: str, amps: float) -> None:
        """A car on ``cid`` starts (draws 2 s after its transaction), charges 40 s, stops."""
        self.tx += 1
        tx = Transaction(str(self.tx), 1, "tag", self.now)
        self.state.transaction_started(cid, tx)
        self.run(2)
        self.draw[cid] = amps
        self.run(40)
        self.draw[cid] = 0.0
        tx.stopped_at = self.now
        self.state.transaction_ended(cid, tx)
        self.run(30)


def test_a_finding_is_one_event_cleared_once_and_raised_again_when_it_comes_back():
    site = Site()
    for _ in range(3):
        site.session("CP1", 16.0)
    assert site.events.kinds() == ["wiring_warning"]
    kind, detail = site.events.rows[0]
    assert detail["finding"] == "reversed_clamp" and detail["subject"] == f"{METER} L1" and detail["events"] >= 3
    assert detail["fix"].startswith("turn the clamp on L1") and detail["evidence"]
    assert [w["kind"] for w in site.watch.warnings("garage")] == ["reversed_clamp"]
    for _ in range(2):  # more of the same: more evidence, no second event
        site.session("CP1", 16.0)
    assert site.events.kinds() == ["wiring_warning"]
    assert site.watch.warnings("garage")[0]["events"] > detail["events"]

    site.reversed = False  # the clamp turned round: the next car contradicts the old events
    site.session("CP1", 16.0)
    assert site.events.kinds() == ["wiring_warning", "wiring_warning_cleared"]
    assert site.watch.warnings("garage") == []
    for _ in range(6):  # correct events only, once the old ones have aged out: still nothing
        site.session("CP1", 16.0)
    assert site.events.kinds() == ["wiring_warning", "wiring_warning_cleared"]

    site.reversed = True  # turned the wrong way again: it comes back, and is raised again
    for _ in range(6):
        site.session("CP1", 16.0)
    assert site.events.kinds() == ["wiring_warning", "wiring_warning_cleared", "wiring_warning"]
    site.watch.stop()


def test_a_charger_wired_in_another_rotation_is_named_with_its_config_fix():
    site = Site()
    site.reversed = False
    site.cfg = parse_config({**CFG, "chargers": [CFG["chargers"][0], {**CFG["chargers"][1], "phase_rotation": "TRS"}]})
    for _ in range(2):
        site.session("CP2", 16.0)
    assert site.events.kinds() == ["wiring_warning"]
    _, detail = site.events.rows[0]
    assert (detail["finding"], detail["subject"]) == ("phase_rotation", "CP2")
    # A 1-phase car shows where the charger's L1 lands (S); the other letters are the closest to the config.
    assert detail["message"].startswith("CP2 is wired S??, not TRS")
    assert detail["config"] == {"chargers.1.phase_rotation": "SRT"}
    site.cfg = parse_config(CFG)  # the config fixed (a reload): the same evidence now fits
    site.run(15)
    assert site.events.kinds() == ["wiring_warning", "wiring_warning_cleared"]
