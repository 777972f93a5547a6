"""Setting a charger up when it connects: capabilities, meter values, the permanent offline fallback profile,
socket availability; and checking what it applies. The link calls of the delivery that are not the dynamic
limit itself; :class:`Installer` makes them for the worker (:mod:`.delivery`) and records what they gave.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from csms.config import SmartChargingConfig
from csms.domain.link import Outcome, ProfileSpec, StationLink

from .channel import ChargerChannel
from .profiles import DYNAMIC_ID, FALLBACK_ID, fallback_shape, fallback_specs, in_unit, station_max_fallback

log = logging.getLogger("csms.delivery")

MEASURANDS = ["Current.Import", "Current.Offered", "Voltage", "Energy.Active.Import.Register"]
#: When a charger refuses the measurand list (firmwares refuse the whole setting for one member they do not
#: support), these are dropped one after the other; Current.Import is kept as long as possible.
MEASURAND_DROP_ORDER = ("Current.Offered", "Voltage", "Energy.Active.Import.Register")
#: Many firmwares refuse a sample interval below 10-60 s: the next larger of these is tried.
INTERVAL_STEPS = (10, 15, 30, 60)
#: Seconds to wait after a connect for the station's BootNotification (or any other message, which shows it
#: had booted before this connection) before setting it up anyway.
BOOT_WAIT = 10.0
#: The parts of a set-up a station may leave unanswered, in the order they are asked.
SETUP_PARTS = ("capabilities", "metering", "fallback")
#: A part the station did not answer (a timeout: a reconnect storm, a slow link or bus) is asked again this
#: many seconds later, doubling per unanswered retry up to the ceiling, on the same connection: until its
#: fallback profile is installed a charger is uncontrolled when it goes offline, and its next boot may be
#: months away. A refusal is an answer and is not asked again before the next set-up.
SETUP_RETRY_FIRST = 15.0
SETUP_RETRY_CEILING = 300.0
#: Set-ups (and retries) in flight at once. Each has one call outstanding, so this bounds the set-up calls a
#: central system waits on: a controller that took over 20,000 stations asked them all at once, and through the
#: bus most answers came after ``call_timeout`` (33,102 capabilities "not answered", leases lost to the saturated
#: loop; ``bench/RESULTS.md``, issue 17). 200 chargers that each take 5 s to answer still set up in 5 s.
SETUP_CONCURRENCY = 200

#: ``record(kind, channel, **detail)``: stores one event about a charger.
Record = Callable[..., None]
#: ``set_profile(channel, link, spec)``: sends one profile and reports how long the charger took to answer.
SetProfile = Callable[[ChargerChannel, StationLink, ProfileSpec], Awaitable[Outcome]]


def setup_retry_delay(retries: int) -> float:
    """Seconds until unanswered set-up parts are asked again, after ``retries`` unanswered retries."""
    return min(SETUP_RETRY_CEILING, SETUP_RETRY_FIRST * 2.0 ** max(0, retries))


def measurand_candidates(wanted: list[str]) -> list[list[str]]:
    """The full list, then the list without each member of MEASURAND_DROP_ORDER in turn, then Current.Import."""
    out = [list(wanted)]
    current = list(wanted)
    for m in MEASURAND_DROP_ORDER:
        if m in current and len(current) > 1:
            current = [x for x in current if x != m]
            if current not in out:
                out.append(current)
    if "Current.Import" in wanted and ["Current.Import"] not in out:
        out.append(["Current.Import"])
    return out


class Installer:
    """The set-up calls for one site's chargers."""

    def __init__(self, settings: SmartChargingConfig, record: Record, set_profile: SetProfile,
                 clock: Callable[[], float], volts: Callable[[ChargerChannel], float]):
        self.settings = settings
        self.record = record
        self.set_profile = set_profile
        self.clock = clock
        self.volts = volts
        self._slots = asyncio.Semaphore(SETUP_CONCURRENCY)

    async def wait_for_boot(self, ch: ChargerChannel, link: StationLink) -> None:
        """Set-up starts once the station's BootNotification was accepted (OCPP: a station may refuse or drop
        calls before that), or at its first other message (it booted before this connection, e.g. before the
        central system restarted), or after BOOT_WAIT s of silence. A later boot on the same connection (a
        reboot) sets it up again (StationBooted)."""
        ready = getattr(link, "ready", None)
        if ready is not None and not ready.is_set():
            try:
                async with asyncio.timeout(BOOT_WAIT):
                    await ready.wait()
            except TimeoutError:
                log.warning("%s: no BootNotification nor any other message %.0f s after connecting; setting it up "
                            "anyway", ch.id, BOOT_WAIT)
                self.record("setup_without_boot", ch, waited=BOOT_WAIT)
        ch.setup_for_boot = getattr(link, "boots", 0)
        log.info("%s: setting up (%s)", ch.id, getattr(link, "ready_reason", "") or "no boot seen")

    async def set_up(self, ch: ChargerChannel, link: StationLink) -> None:
        """Capabilities, metering and the fallback profile, then socket availability; what the station did not
        answer is kept in ``ch.setup_unanswered`` for :meth:`repair`. Each waits for one of
        :data:`SETUP_CONCURRENCY` slots."""
        async with self._slots:
            await self._set_up(ch, link)

    async def _set_up(self, ch: ChargerChannel, link: StationLink) -> None:
        ch.setup_unanswered = tuple([part for part in SETUP_PARTS if not await self._ask(part, ch, link)])
        group = ch.group
        if ch.cfg.socket_connector and group is not None:
            result = await link.set_availability(ch.cfg.socket_connector, group.socket_enabled)
            self.record("availability", ch, operative=group.socket_enabled, outcome=result.value)
        if group is None or not group.active:
            # Not balanced (any more): remove the dynamic limits we may have installed, keep the fallback.
            for pid in DYNAMIC_ID.values():
                await link.clear_profile(profile_id=pid)
            self.record("cleared", ch, reason="not in an active group")

    async def repair(self, ch: ChargerChannel, link: StationLink) -> None:
        """Asks again, in set-up order, what the station left unanswered. Capabilities read at last may show a
        fallback it refused was in a unit or at a stack level it cannot take: that is asked again too."""
        async with self._slots:
            await self._repair(ch, link)

    async def _repair(self, ch: ChargerChannel, link: StationLink) -> None:
        pending = list(ch.setup_unanswered)
        ch.setup_retries += 1
        left = []
        for part in SETUP_PARTS:
            if part not in pending:
                continue
            if not await self._ask(part, ch, link):
                left.append(part)
            elif part == "capabilities" and not ch.fallback_installed and "fallback" not in pending:
                pending.append("fallback")
        ch.setup_unanswered = tuple(left)

    def retry_in(self, ch: ChargerChannel) -> float | None:
        """After a set-up or a repair: seconds until the unanswered parts are asked again (None: all answered);
        sets ``ch.setup_retry_at``."""
        if not ch.setup_unanswered:
            if ch.setup_retries:
                log.info("%s: set-up completed on retry %d", ch.id, ch.setup_retries)
                self.record("setup_completed", ch, retries=ch.setup_retries)
            ch.setup_retry_at = float("inf")
            return None
        delay = setup_retry_delay(ch.setup_retries)
        ch.setup_retry_at = self.clock() + delay
        log.warning("%s: no answer to its set-up (%s); asking again in %.0f s", ch.id, ", ".join(ch.setup_unanswered),
                    delay)
        self.record("setup_unanswered", ch, parts=",".join(ch.setup_unanswered), retries=ch.setup_retries,
                    retry_in=delay)
        return delay

    async def _ask(self, part: str, ch: ChargerChannel, link: StationLink) -> bool:
        """One set-up part; False if the station did not answer it."""
        if part == "capabilities":
            return await self.read_capabilities(ch, link)
        if part == "metering":
            return await self.configure_metering(ch, link)
        return await self.install_fallback(ch, link)

    async def read_capabilities(self, ch: ChargerChannel, link: StationLink) -> bool:
        ch.caps = caps = await link.read_capabilities(ch.connector)
        if not caps.read:
            log.warning("%s: could not read the charger's capabilities (%s); assuming defaults (stack level 8, "
                        "A and W)", ch.id, "no answer" if caps.unanswered else "refused")
            self.record("capabilities_unread", ch, unanswered=caps.unanswered)
        self.record("capabilities", ch, read=caps.read, **caps.raw)
        if caps.ignored:
            reported = ", ".join(f"{k}={v!r}" for k, v in caps.ignored.items())
            log.warning("%s: the charger reports %s: not a whole number, ignored (the default applies)", ch.id,
                        reported)
            self.record("capabilities_ignored", ch, **caps.ignored)
        if caps.phase_rotation and ch.cfg.phases == 3 and caps.phase_rotation not in ("Unknown", "NotApplicable") \
                and caps.phase_rotation != ch.cfg.phase_rotation:
            log.warning("%s: charger reports phase rotation %s, config says %s; balancing uses the config",
                        ch.id, caps.phase_rotation, ch.cfg.phase_rotation)
            self.record("phase_rotation_mismatch", ch, reported=caps.phase_rotation, configured=ch.cfg.phase_rotation)
        # The advertised maximum, and one below it for firmwares that refuse their own maximum.
        top = max(caps.max_stack_level if caps.max_stack_level is not None else 8, 1)
        ch.stack_levels = [top, top - 1] if top > 1 else [top]
        return not caps.unanswered

    async def configure_metering(self, ch: ChargerChannel, link: StationLink) -> bool:
        """Asks for MEASURANDS every ``meter_value_interval`` s. A refused list is retried without the members
        the charger may not support; a refused interval with the next larger of INTERVAL_STEPS. What the charger
        accepted is logged and stored (event ``metering``). False if a setting got no answer."""
        wanted_interval = self.settings.meter_value_interval
        measurands, silent = await _first_accepted(link.set_measurands, measurand_candidates(MEASURANDS))
        interval, silent_too = await _first_accepted(
            link.set_meter_interval, [wanted_interval, *(i for i in INTERVAL_STEPS if i > wanted_interval)])
        self.record("metering", ch, measurands=measurands, interval=interval, wanted_measurands=MEASURANDS,
                    wanted_interval=wanted_interval)
        if ch.caps is not None:
            ch.caps.raw["accepted_measurands"] = ",".join(measurands) if measurands else ""
            ch.caps.raw["accepted_interval"] = str(interval) if interval is not None else ""
        if measurands != MEASURANDS:
            log.warning("%s: charger %s the measurands %s; %s", ch.id, "did not answer" if silent else "refused",
                        ",".join(MEASURANDS), f"it samples {','.join(measurands)}" if measurands else
                        "its own defaults apply; phases in use will be learned late")
        if interval != wanted_interval:
            log.warning("%s: charger %s a %d s meter-value interval; %s", ch.id,
                        "did not answer" if silent_too else "refused", wanted_interval,
                        f"it accepted {interval} s" if interval is not None else "its own interval applies")
        return not (silent or silent_too)

    async def install_fallback(self, ch: ChargerChannel, link: StationLink) -> bool:
        """The permanent offline fallback, in the first purpose the charger takes; False if it did not answer."""
        n, _, phases = fallback_shape(ch)
        limit, unit = in_unit(ch, ch.cfg.offline_current, n, self.volts)
        outcomes: list[Outcome] = []
        for spec in fallback_specs(ch, limit, unit, self.clock()):
            outcome = await self.set_profile(ch, link, spec)
            outcomes.append(outcome)
            self.record("profile", ch, role="fallback", purpose=spec.purpose.value, limit=spec.limit, unit=unit,
                        number_phases=n, outcome=outcome.value)
            if outcome.ok:
                ch.fallback_installed = True
                ch.fallback_phases = phases
                ch.fallback_purpose = spec.purpose
                log.info("%s: offline fallback %.1f %s on %d phase(s) installed as %s", ch.id, limit, unit, n,
                         spec.purpose.value)
                return True
        ch.fallback_installed = False
        if all(o.unanswered for o in outcomes):
            log.error("%s: no answer to the offline fallback profile (%s); it is uncontrolled when offline until it "
                      "answers", ch.id, ", ".join(o.value for o in outcomes))
            return False
        if not ch.setup_for_boot and all(o is Outcome.ERROR for o in outcomes):
            # Some chargers answer every request with a CALLERROR (SecurityError) until their boot is accepted.
            log.warning("%s: every offline fallback profile answered with a CALLERROR before any BootNotification; "
                        "it is uncontrolled when offline until it boots and is set up again", ch.id)
            return True
        log.error("%s: charger refused every offline fallback profile; it is uncontrolled when offline", ch.id)
        return True

    async def move_fallback_to_station_max(self, ch: ChargerChannel, link: StationLink) -> None:
        """A station-wide maximum is combined with the TxDefault fallback by minimum, so the fallback must move
        to a lower-stack station maximum, or it would cap every dynamic limit."""
        await link.clear_profile(profile_id=FALLBACK_ID)
        ch.fallback_installed = False
        n, _, phases = fallback_shape(ch)
        limit, unit = in_unit(ch, ch.cfg.offline_current, n, self.volts)
        spec = station_max_fallback(ch, limit, unit, self.clock())
        outcome = await self.set_profile(ch, link, spec)
        self.record("profile", ch, role="fallback", purpose=spec.purpose.value, limit=limit, unit=unit,
                    outcome=outcome.value)
        ch.fallback_installed = outcome.ok
        ch.fallback_phases = phases
        ch.fallback_purpose = spec.purpose

    async def confirm(self, ch: ChargerChannel, link: StationLink, amps: float, unit: str) -> None:
        """Asks the charger's composite schedule and records a mismatch with the limit it accepted."""
        composite = await link.get_composite(ch.connector, 60, unit)
        if composite is None:
            return  # not answered; a charger that cannot answer it is not asked again (csms.domain.link)
        applied = composite.limit
        if applied is None:
            # An accepted profile and an empty composite schedule: the charger does not say it applies anything.
            log.warning("%s: composite schedule has no periods after %.1f A was accepted", ch.id, amps)
            self.record("composite_mismatch", ch, applied=None, wanted=amps, reason="no periods")
        elif unit == "A" and abs(applied - amps) > 0.5:
            log.warning("%s: composite schedule applies %.1f A, we set %.1f A", ch.id, applied, amps)
            self.record("composite_mismatch", ch, applied=applied, wanted=amps)


async def _first_accepted(setting: Callable[[Any], Awaitable[Outcome]], candidates: list) -> tuple[Any, bool]:
    """The first candidate the charger accepts (None once it refuses for good, does not answer or all fail),
    and whether it stopped for want of an answer."""
    for candidate in candidates:
        outcome = await setting(candidate)
        if outcome.ok:
            return candidate, False
        if outcome.unanswered:
            return None, True
        if outcome.permanent:
            return None, False
    return None, False
