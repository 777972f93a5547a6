"""The commissioning check on a running central system: one charger of a group at a time, the others held.

It acts only through what the balancer already honours, the operator's caps (:class:`OperatorCaps`): every
charger under test is capped at 0 A (paused, as a cap below ``min_current`` does), then one at a time is
released to a small step (:data:`STEP_A`, less if the fuse has less room over what the meter shows) and held
again. So the balancer still decides every limit, and the step is kept under the fuse even when the meter is
wired wrong (the room is taken from the *magnitudes* the meter shows: a reversed clamp still shows how much).
The caps carry a lease (:data:`LEASE`): a central system that dies mid-check leaves no charger paused for long.
Every cap it set is lifted at the end, and a cap the operator had before is put back, also on error or cancel.

Scaled out, a check runs on the controller leading the group (its balancer is the one the caps steer, and it
reads the group's meter); it is refused elsewhere, and ends as failed if that controller stops leading the group
mid-check. A controller that starts leading a group marks a check of it left ``running`` by the previous leader
``interrupted``.

The mains readings it collects, the steps and what each charger reported drawing go to the pure
:func:`csms.commissioning.inference.infer`; the report is stored (:mod:`csms.storage.commissioning`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

from meter_gateway.reading import MeterReading

from csms.commissioning import report as words
from csms.commissioning.inference import infer
from csms.commissioning.measure import (BASELINE_WINDOW, NOISE_A, baseline, is_settled, measure_step,
                                         phase_medians, settled_peak)
from csms.commissioning.model import ChargerWiring, MainsSample, SiteWiring, Step, Untested
from csms.commissioning.port import CheckRefused
from csms.config import LoadBalancerConfig, SiteConfig
from csms.domain.state import SiteState
from csms.operations.port import StationCommander
from csms.runtime.aio import cancel_and_wait
from csms.runtime.operator_caps import OperatorCaps
from csms.storage import commissioning as stored
from csms.storage.database import Storage
from csms.storage.records import log_event

log = logging.getLogger("csms.commissioning")

#: A released charger may draw this much per phase (A): far above the meter's noise, far below a fuse.
STEP_A = 10.0
#: Seconds each cap set by the check stays valid without being set again.
LEASE = 120.0
BY = "commissioning"
#: Seconds between two looks at the readings while waiting for a car.
TICK = 0.2


class LeadLost(Exception):
    """This controller stopped leading the group under check: its caps no longer steer the group's balancer."""


def site_wiring(cfg: SiteConfig, group: LoadBalancerConfig, channels: Mapping[str, Any]) -> SiteWiring:
    """The group's wiring as the config (and each charger's own report, from its delivery channel) claims it:
    what the active check and the passive watch (:mod:`csms.runtime.wiring_watch`) hold the mains against."""
    chargers = []
    position = {c.id: i for i, c in enumerate(cfg.chargers)}  # one pass: a group may have thousands of chargers
    for cid in group.chargers:
        index = position[cid]
        c = cfg.chargers[index]
        caps = getattr(channels.get(cid), "caps", None)
        chargers.append(ChargerWiring(cid, index, c.phases, c.phase_rotation, getattr(caps, "phase_rotation", None)))
    meter = next(m for m in cfg.meters if m.serial == group.meter)
    ramp = cfg.smart_charging.ramp_time
    return SiteWiring(group.id, next(i for i, g in enumerate(cfg.load_balancers) if g.id == group.id),
                      meter.serial, group.chargers_in_measurement, tuple(chargers),
                      tuple(p for p in group.phases if p in meter.phases),
                      expected_response=ramp + 2 * meter.poll_interval + 1.0)


class Commissioning:
    """Runs commissioning checks, one per group at a time; owns their tasks (cancelled and awaited on stop)."""

    def __init__(self, config: Callable[[], SiteConfig], state: SiteState, caps: OperatorCaps,
                 channels: Mapping[str, Any], commands: StationCommander, storage: Storage,
                 clock: Callable[[], float], leads: Callable[[str], bool] = lambda group_id: True):
        """``leads(group_id)``: whether this process balances the group now (a controller: leads it)."""
        self.config, self.state, self.caps, self.channels = config, state, caps, channels
        self.commands, self.storage, self.clock, self.leads = commands, storage, clock, leads
        self._tasks: dict[str, asyncio.Task] = {}
        self._readings: dict[str, list[MainsSample]] = {}
        #: group id -> what its running check is doing now, in words (a running report shows it)
        self._progress: dict[str, str] = {}

    # -- the port -----------------------------------------------------------------------------------

    async def start(self, group_id: str, by: str) -> int:
        cfg = self.config()
        group = next((g for g in cfg.load_balancers if g.id == group_id), None)
        if group is None:
            raise CheckRefused(404, f"no load-balancing group {group_id!r}; GET /api/groups lists them")
        if group.meter is None:
            raise CheckRefused(422, f"group {group_id!r} has no meter: a static group has no wiring to check")
        if not self.leads(group_id):
            raise CheckRefused(409, f"this controller does not lead group {group_id!r} now: start the check on the "
                                    "controller that does (GET /api/status on each lists its node.groups)")
        running = self._tasks.get(group_id)
        if running is not None and not running.done():
            raise CheckRefused(409, f"a commissioning check of group {group_id!r} is already running")
        report_id = await self.storage.write(stored.start_report(group_id, self.clock(), by))
        self._tasks[group_id] = asyncio.create_task(self._run(report_id, group, by), name=f"commission-{group_id}")
        return report_id

    async def report(self, report_id: int) -> dict[str, Any] | None:
        row = await self.storage.read(stored.load_report(report_id))
        return self._with_progress(row) if row is not None else None

    async def reports(self, group_id: str | None, limit: int) -> list[dict[str, Any]]:
        return [self._with_progress(r) for r in await self.storage.read(stored.list_reports(group_id, limit))]

    def _with_progress(self, row: dict[str, Any]) -> dict[str, Any]:
        if row["state"] == "running":
            row["progress"] = self._progress.get(row["group"])
        return row

    async def restore(self, group_ids: list[str] | None = None) -> None:
        """Marks the checks left ``running`` by a process that stopped as ``interrupted``: every group's (one
        process), or those of ``group_ids`` (a controller that has just started leading them)."""
        if group_ids is None:
            await self.storage.write(stored.interrupted)
        elif group_ids:
            await self.storage.write(stored.interrupted_in(group_ids))

    async def stop(self) -> None:
        await cancel_and_wait(list(self._tasks.values()))
        self._tasks.clear()

    def on_reading(self, reading: MeterReading) -> None:
        samples = self._readings.get(reading.serial)
        if samples is not None:
            samples.append(MainsSample(reading.taken_at, reading.current, reading.power, reading.voltage,
                                       reading.received_at))

    # -- one check ----------------------------------------------------------------------------------

    async def _run(self, report_id: int, group: LoadBalancerConfig, by: str) -> None:
        started = self.clock()
        state, report = "failed", {"group": group.id, "ok": False, "error": "stopped before it ended"}
        try:
            report = await self._check(group, started)
            state = "done"
        except asyncio.CancelledError:
            state, report = "cancelled", {"group": group.id, "ok": False, "error": "cancelled"}
            raise
        except LeadLost as exc:  # not a fault of this process: the report says why
            log.warning("commissioning check of %s ended: %s", group.id, exc)
            report = {"group": group.id, "ok": False, "error": str(exc)}
        except Exception as exc:  # the check failed; the report says why, the central system carries on
            log.exception("commissioning check of %s failed", group.id)
            report = {"group": group.id, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
        finally:
            self._progress.pop(group.id, None)
            report.setdefault("id", report_id)
            await self.storage.write(stored.finish_report(report_id, self.clock(), state, report))
            self.storage.write_nowait(log_event(f"commissioning_{state}", self.clock(), group_id=group.id,
                                                ok=report.get("ok"), by=by, report=report_id,
                                                findings=[f["kind"] for f in report.get("findings", [])]))

    def _testable(self, group: LoadBalancerConfig) -> tuple[list[str], list[Untested]]:
        testable, untested = [], []
        for cid in group.chargers:
            st = self.state.stations.get(cid)
            if st is None or not st.connected:
                untested.append(Untested(cid, "not connected to the central system"))
            elif not st.transactions:
                untested.append(Untested(cid, "no car plugged in and charging (no running transaction): plug a "
                                              "car in, start a session and run the check again"))
            else:
                testable.append(cid)
        return testable, untested

    async def _check(self, group: LoadBalancerConfig, started: float) -> dict[str, Any]:
        cfg = self.config()
        wiring = site_wiring(cfg, group, self.channels)
        meter = next(m for m in cfg.meters if m.serial == group.meter)
        ramp, poll = cfg.smart_charging.ramp_time, meter.poll_interval
        testable, untested = self._testable(group)
        samples: list[MainsSample] = []
        self._readings[meter.serial] = samples
        before = {cid: self.caps.cap(cid) for cid in testable}
        capped: list[str] = []
        steps: list[Step] = []
        log.info("commissioning %s: testing %s; not testable: %s", group.id, testable or "nothing",
                 [u.charger_id for u in untested])
        self.caps.hold_for_check(group.id, testable)
        try:
            self._progress[group.id] = f"holding {len(testable)} charger(s) at 0 A until their cars have followed"
            for cid in testable:  # every charger under test held, before anything is released
                await self.caps.set_cap(cid, 0.0, self.clock() + LEASE, None, BY, check=True)
                capped.append(cid)
            if testable:
                await asyncio.sleep(ramp + 2 * poll + 1.0)  # every car has followed (IEC 61851: 5 s)
            quiet = self.clock() - BASELINE_WINDOW  # the first release's baseline: the whole window
            for i, cid in enumerate(testable, 1):
                self._progress[group.id] = f"{cid} released alone ({i} of {len(testable)})"
                step = await self._step(cid, group, capped, samples, ramp, poll, untested, quiet)
                quiet = self.clock()  # its hold has settled (or had the EV's whole response)
                if step is not None:
                    steps.append(step)
        finally:
            self._progress[group.id] = "lifting the holds and judging the steps"
            try:
                await self._restore(capped, before)
            finally:
                self.caps.end_check(testable)
                self._readings.pop(meter.serial, None)
        measures = [m for m in (measure_step(samples, s) for s in steps) if m is not None]
        for s in steps:
            if not any(m.charger_id == s.charger_id for m in measures):
                untested.append(Untested(s.charger_id, "no mains reading before or during its step: is the meter "
                                                       "online?"))
        delays = [s.received_at - s.at for s in samples if s.received_at is not None]
        verdict = infer(wiring, measures, untested, max(delays) if delays else None)
        peak = max((abs(a) for s in samples for a in s.current if a is not None), default=None)
        return words.as_json(verdict, wiring, started, self.clock(), {
            "peak_a": peak, "fuse_a": group.supply_max_current, "readings": len(samples),
            "steps": [{"charger": s.charger_id, "allowed": s.allowed, "released": round(s.released_at - started, 1),
                       "held": round(s.held_at - started, 1)} for s in steps]})

    async def _step(self, cid: str, group: LoadBalancerConfig, capped: list[str], samples: list[MainsSample],
                    ramp: float, poll: float, untested: list[Untested], quiet: float) -> Step | None:
        """Releases ``cid`` alone and holds it again. ``quiet``: since when every charger has been held and
        settled; the release's baseline (its room under the fuse and the reference it must move from) is read
        from there on only, or from the last reading before now: readings of the previous car still ramping
        down left "no room under the fuse" on a one-phase site carrying 10 A."""
        if not self.leads(group.id):
            raise LeadLost(f"this controller stopped leading group {group.id!r} during the check; run it again "
                               "on the controller that leads it")
        st = self.state.stations.get(cid)
        if st is None or not st.connected or not st.transactions:
            untested.append(Untested(cid, "its session ended or it disconnected during the check"))
            return None
        now = self.clock()
        for other in capped:  # renew the lease of the holds
            held = self.caps.cap(other)
            if held is not None and held.until is not None and held.until - now < LEASE / 2:
                await self.caps.set_cap(other, 0.0, now + LEASE, None, BY, check=True)
        base = baseline(samples, now, min(BASELINE_WINDOW, now - quiet))
        if not base:
            untested.append(Untested(cid, "no mains reading to compare with: is the meter online?"))
            return None
        shown = settled_peak(base)
        room = group.supply_max_current - group.margin - shown
        charger = self.config().charger(cid)
        allowed = math.floor(min(STEP_A, charger.max_current if charger else STEP_A, room) * 10) / 10
        if allowed < group.min_current:
            untested.append(Untested(cid, f"no room under the fuse: the meter shows {shown:.1f} A on a phase, and "
                                          f"a car at min_current {group.min_current:g} A would pass "
                                          f"{group.supply_max_current - group.margin:.1f} A; run the check when "
                                          "the building draws less"))
            return None
        reference = phase_medians(base)
        released = self.clock()
        await self.caps.set_cap(cid, allowed, released + LEASE, None, BY, check=True)
        await self._wait(samples, released, reference, 2 * ramp + 2 * poll + 2.0, moved=True)
        drawn = await self._drawn(cid, released)
        held = self.clock()
        await self.caps.set_cap(cid, 0.0, held + LEASE, None, BY, check=True)
        if _moved(samples, reference):
            await self._wait(samples, held, None, ramp + 2 * poll + 1.0, moved=False, back_to=reference)
        else:  # the mains cannot show the car stopping: give it the whole EV response before the next release
            await asyncio.sleep(ramp + 1.0)
        return Step(cid, released, held, allowed, drawn)

    async def _wait(self, samples: list[MainsSample], since: float, reference, bound: float, *, moved: bool,
                    back_to=None) -> None:
        """Until the mains have settled after a release (moved away from ``reference``) or a hold (back near
        ``back_to``), at most ``bound`` s: a car that never moves costs the bound, one that follows in 2 s
        costs about 3."""
        deadline = since + bound
        while self.clock() < deadline:
            await asyncio.sleep(TICK)
            now = self.clock()
            if moved and is_settled(samples, since, now, reference=reference):
                return
            if not moved and back_to is not None and is_settled(samples, since, now) and \
                    not is_settled(samples, since, now, reference=back_to, moved=1.0):
                return

    async def _drawn(self, cid: str, released: float) -> tuple[float | None, float | None, float | None] | None:
        """What the charger reports drawing now: asks it for a sample (TriggerMessage), waits briefly."""
        charger = self.config().charger(cid)
        connector = (charger.socket_connector if charger else 0) or 1
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                await self.commands.execute(cid, "trigger-message", {"message": "MeterValues",
                                                                     "connector": connector}, BY)
        deadline = self.clock() + 2.0
        while True:
            st = self.state.stations.get(cid)
            sample = st.latest_sample() if st is not None else None
            if sample is not None and sample.taken_at > released + 1.0:
                return sample.current
            if self.clock() >= deadline:
                return None
            await asyncio.sleep(TICK)

    async def _restore(self, capped: list[str], before: dict[str, Any]) -> None:
        """Every hold lifted, and the operator's own caps put back (best effort per charger)."""
        for cid in capped:
            prior = before.get(cid)
            try:
                if prior is not None and (prior.until is None or prior.until > self.clock()):
                    await self.caps.put_back(prior)
                else:
                    await self.caps.clear_cap(cid, None, BY, check=True)
            except Exception:
                log.exception("commissioning: could not restore %s's cap; it lapses by itself within %.0f s",
                              cid, LEASE)


def _moved(samples: list[MainsSample], reference: tuple[float | None, ...]) -> bool:
    """Whether the newest reading differs from ``reference`` by more than noise on some phase."""
    if not samples:
        return False
    return any(r is not None and v is not None and abs(v - r) >= NOISE_A
               for r, v in zip(reference, samples[-1].current))


