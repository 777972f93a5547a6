"""A charger that does not answer its offline fallback profile when it connects (a firmware busy after a
reconnect storm, a lossy radio link) gets it on the same connection, without waiting for its next boot, at
the shipped defaults (``call_timeout`` 15 s, first retry 15 s later)."""

from __future__ import annotations

import dataclasses
import json
import sqlite3

import pytest

from csms.smart_charging.profiles import DYNAMIC_ID, FALLBACK_ID
from csms.smart_charging.setup import SETUP_RETRY_FIRST
from tests.e2e.harness import SLOWEST_EV, ChargerSpec, SiteSpec, running_site, wait_until

pytestmark = pytest.mark.e2e

LOST = ("CP1", "CP2")


def events(rig, kind: str) -> list[tuple[str, dict]]:
    with sqlite3.connect(rig.db_path) as db:
        rows = db.execute("SELECT station_id, detail FROM events WHERE kind = ? ORDER BY id", [kind]).fetchall()
    return [(station, json.loads(detail or "{}")) for station, detail in rows]


async def test_a_lost_fallback_profile_is_asked_again_on_the_same_connection(tmp_path):
    """CP1 (1.6) and CP2 (2.0.1) lose the first two SetChargingProfile calls of their connection: both purposes
    of the fallback time out at set-up. They get the fallback on a retry, stay on their first connection, and
    their cars then charge under control; CP3 answers at once and is never asked again."""
    spec = SiteSpec([ChargerSpec("CP1", "ocpp1.6"), ChargerSpec("CP2", "ocpp2.0.1"), ChargerSpec("CP3", "ocpp1.6")])

    def lossy(sc):
        if sc.id in LOST:
            sc.misbehaviour = dataclasses.replace(sc.misbehaviour, lose=(("SetChargingProfile", 2),))
        return sc

    async with running_site(tmp_path, spec, tweak=lossy) as rig:
        timeout = rig.cfg.server.call_timeout
        connects = {cid: rig.csms.log_tail(10**9).count(f"{cid}: connected") for cid in ("CP1", "CP2", "CP3")}
        # Two timeouts, the first retry, and its answer.
        took = await wait_until(
            lambda: all(rig.charger(c).store.profiles.get(FALLBACK_ID) is not None for c in LOST),
            2 * timeout + SETUP_RETRY_FIRST + 15, "the lost chargers have their fallback profile")
        for cid in LOST:
            fallback = rig.charger(cid).store.profiles[FALLBACK_ID]
            assert fallback.schedule.periods[0].limit == 6.0, (cid, fallback)
        # The charger holds the profile as soon as it accepted it; the event log's entry lands with the
        # storage's next group commit, a moment later.
        await wait_until(lambda: len(events(rig, "setup_completed")) >= len(LOST), 5, "set-up completions stored")
        unanswered, completed = events(rig, "setup_unanswered"), events(rig, "setup_completed")
        assert sorted(s for s, _ in unanswered) == list(LOST), unanswered
        assert all(d["parts"] == "fallback" and d["retry_in"] == SETUP_RETRY_FIRST for _, d in unanswered)
        assert sorted(s for s, _ in completed) == list(LOST) and all(d["retries"] == 1 for _, d in completed)
        log = rig.csms.log_tail(10**9)
        assert {cid: log.count(f"{cid}: connected") for cid in connects} == connects, "a charger reconnected"
        for cid in LOST:
            assert f"{cid}: set-up completed on retry 1" in log
        print(f"fallback installed {took:.1f} s after the chargers were connected (call_timeout {timeout:.0f} s)")

        rig.plug_in_all()
        await rig.settle(lambda s: all(sum(s.evs[c]) > 0 for c in ("CP1", "CP2", "CP3")), SLOWEST_EV + 15,
                         "every car charges")
        await wait_until(lambda: all(any(rig.charger(c).store.profiles.get(p) is not None
                                         for p in DYNAMIC_ID.values()) for c in LOST),
                         15, "the lost chargers hold a dynamic limit")
        assert rig.observer.overshoot(spec.fuse) == "never above the fuse"
