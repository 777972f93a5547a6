"""The wiring faults the commissioning check must find, planted in the simulated site and meter."""

from __future__ import annotations

import pytest

from simulators.charger_config import SimChargerConfig
from simulators.meter import AmpGuardSim, MeterFaults
from simulators.wiring_faults import parse_faults


def test_faults_parse_and_name_what_is_wrong():
    f = parse_faults(["reversed-clamp=L2", "swapped-phases=L1-L3", "chargers-unmetered", "CP1:wired-rotation=str"])
    assert f.meter == MeterFaults(frozenset({2}), (1, 3)) and f.chargers_unmetered
    assert f.tweak(SimChargerConfig("CP1")).wired_rotation == "STR"
    assert f.tweak(SimChargerConfig("CP2")).wired_rotation is None
    for bad in ("reversed-clamp=L4", "swapped-phases=L1-L1", "CP1:wired-rotation=RRS", "upside-down"):
        with pytest.raises(ValueError, match="--fault"):
            parse_faults([bad])


def test_a_swapped_clamp_reads_power_factor_minus_a_half_and_a_reversed_one_negative():
    meter = AmpGuardSim("AG1G", lambda: (10.0, 20.0, 30.0), faults=MeterFaults(frozenset({3}), (1, 2)))
    s = meter.sample()
    assert s.current == (20.0, 10.0, -30.0)
    assert s.power == (-0.5 * 20 * 230, -0.5 * 10 * 230, -30 * 230)


def test_a_charger_wired_otherwise_reports_its_belief_and_draws_on_its_wiring():
    from simulators.chargepoint import SimCharger
    from simulators.clock import SimClock

    c = SimCharger(SimChargerConfig("CP1", phase_rotation="RST", wired_rotation="TRS"), SimClock())
    assert c.phase_rotation == "TRS" and c.config.phase_rotation == "RST"
