"""Installation faults to plant in a simulated site, the ones the Amp Guard manual warns about: a clamp the wrong
way round, two clamps on each other's phases, chargers wired before the clamps, a charger wired in another phase
rotation than configured. ``simulate site --fault ...`` and the commissioning tests use them to prove that
``csms commission`` finds each.

    reversed-clamp=L2          the clamp on meter phase L2 is mounted backwards
    swapped-phases=L1-L2       the clamps of L1 and L2 sit on each other's conductor
    chargers-unmetered         the chargers are fed before the meter's clamps (it sees none of them)
    CP0001:wired-rotation=STR  the charger is wired STR while it (and the config) say otherwise
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field

from simulators.charger_config import SimChargerConfig
from simulators.meter import MeterFaults

FAULTS = ("reversed-clamp=L1|L2|L3", "swapped-phases=L1-L2", "chargers-unmetered", "CHARGER_ID:wired-rotation=STR")


@dataclass(frozen=True)
class WiringFaults:
    meter: MeterFaults = field(default_factory=MeterFaults)
    chargers_unmetered: bool = False
    #: charger id -> how it is really wired
    rotations: dict[str, str] = field(default_factory=dict)

    def tweak(self, sc: SimChargerConfig) -> SimChargerConfig:
        """The charger's simulator config with its real wiring."""
        wired = self.rotations.get(sc.id)
        return dataclasses.replace(sc, wired_rotation=wired) if wired else sc

    def apply(self, sim) -> None:  # sim: simulators.simulation.Simulation (not imported: no cycle)
        """Plants the meter faults in every simulated meter and site of ``sim``."""
        for serial, meter in sim.meters.items():
            meter.faults = self.meter
            if self.chargers_unmetered:
                sim.sites[serial].chargers_behind_meter = False


def _phase(text: str, what: str) -> int:
    value = text.strip().upper().removeprefix("L")
    if value not in ("1", "2", "3"):
        raise ValueError(f"--fault {what}: name a meter phase L1, L2 or L3, not {text!r}")
    return int(value)


def parse_faults(items: Iterable[str]) -> WiringFaults:
    """Reads ``--fault`` arguments; a ValueError names the one not understood and lists the faults."""
    reversed_: set[int] = set()
    swapped: tuple[int, int] | None = None
    unmetered = False
    rotations: dict[str, str] = {}
    for item in items:
        name, _, value = item.partition("=")
        if name == "reversed-clamp":
            reversed_.add(_phase(value, item))
        elif name == "swapped-phases":
            a, sep, b = value.partition("-")
            pair = (_phase(a, item), _phase(b, item)) if sep else (0, 0)
            if not sep or pair[0] == pair[1]:
                raise ValueError(f"--fault {item}: write two different phases, e.g. swapped-phases=L1-L2")
            swapped = pair
        elif item == "chargers-unmetered":
            unmetered = True
        elif name.endswith(":wired-rotation"):
            cid = name.removesuffix(":wired-rotation")
            if sorted(value.upper()) != ["R", "S", "T"]:
                raise ValueError(f"--fault {item}: the rotation is a permutation of RST, e.g. STR")
            rotations[cid] = value.upper()
        else:
            raise ValueError(f"--fault {item!r} not understood; faults are: {', '.join(FAULTS)}")
    return WiringFaults(MeterFaults(frozenset(reversed_), swapped), unmetered, rotations)
