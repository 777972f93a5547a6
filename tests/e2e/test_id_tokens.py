"""Who may charge, through ``csms serve`` and its TOML: a blocked card starts no charging on 1.6 or 2.0.1."""

from __future__ import annotations

import pytest

from tests.e2e.harness import SLOWEST_EV, ChargerSpec, SiteSpec, running_site

pytestmark = pytest.mark.e2e


async def test_a_blocked_card_cannot_start_charging_on_either_version(tmp_path):
    """Four chargers of an organisation that accepts only its listed cards: a blocked card is presented at a
    1.6 and at a 2.0.1 charger, an accepted one at the other two. The accepted cars charge; the blocked ones
    never draw a milliampere, however long they stay plugged in."""
    spec = SiteSpec([ChargerSpec("CP1", "ocpp1.6"), ChargerSpec("CP2", "ocpp2.0.1"),
                     ChargerSpec("CP3", "ocpp1.6"), ChargerSpec("CP4", "ocpp2.0.1")],
                    authorization="list", id_tokens=[{"token": "LOST", "status": "Blocked"},
                                                     {"token": "GOOD-3", "parent": "HOUSEHOLD-1"},
                                                     {"token": "GOOD-4", "parent": "HOUSEHOLD-1"}])
    blocked, accepted = ("CP1", "CP2"), ("CP3", "CP4")

    def card(sc):
        # One card per accepted car: a card in use at one charger is refused at another (ConcurrentTx).
        sc.id_tag = "LOST" if sc.id in blocked else f"GOOD-{sc.id[-1]}"
        return sc

    async with running_site(tmp_path, spec, tweak=card) as rig:
        plugged = rig.now()
        rig.plug_in_all()
        await rig.settle(lambda s: all(sum(s.evs[c]) > 0 for c in accepted), SLOWEST_EV + 10,
                         "the cars with the accepted card charge")
        await rig.hold(SLOWEST_EV + 2)
        seen = rig.observer.since(plugged)
        for cid in blocked:
            worst = max(max(s.evs[cid]) for s in seen)
            assert worst == 0.0, f"{cid} with a blocked card drew {worst:.2f} A"
            assert rig.charger(cid).connectors[1].session is None
