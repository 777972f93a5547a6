"""Smart-charging delivery: the balancer decides, this makes chargers obey, safely, in both versions.

One :class:`ChargerChannel` per configured charger owns everything we send that charger. Its worker
task sets the charger up when it connects (capabilities, meter values, the permanent offline
fallback profile, socket availability), then keeps exactly one dynamic limit in force: a
higher-stack profile that expires after ``failsafe_ttl`` unless refreshed, so a charger that stops
hearing from us falls back by itself.

Safety rules, in the order they bind:

* A decrease goes out at once; nothing delays it (not the deadband, not the increase interval, not a
  charger's minimum update interval).
* Break before make: an increase is sent only while, on each phase it draws on, the sum over the
  group of every other charger's *exposure* plus the new limit fits the decision's budget. Exposure is
  the larger of what a charger may apply (its accepted limit, or the old one while a decrease is
  unanswered) and its measured draw, until ``ramp_time`` after its decrease was accepted or until the
  balancer's decision carries the mains meter's proof that it is down (``Decision.proven_down``).
* Coalescing: a channel holds only the newest wanted limit; a slow charger never receives a stale
  one and never holds up another channel.

Every profile sent, its answer and every change of a charger's control state is logged and stored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from csms.aio import cancel_and_wait, wait_event
from csms.balancer.allocation import floor_step
from csms.balancer.model import ControlState, Decision
from csms.config import ChargerConfig, LoadBalancerConfig, SiteConfig, SmartChargingConfig, charger_phases
from csms.link import Capabilities, Outcome, ProfileSpec, Purpose, StationLink
from csms.state import (
    Event, MeterSampled, SiteState, StationBooted, StationDisconnected, TransactionEnded, TransactionStarted,
)
from csms.storage.database import Storage
from csms.storage.records import log_event

log = logging.getLogger("csms.delivery")

FALLBACK_ID = 1
DYNAMIC_ID = {Purpose.TX: 10, Purpose.TX_DEFAULT: 11, Purpose.STATION_MAX: 12}
CHAINS = {
    "auto": (Purpose.TX, Purpose.TX_DEFAULT, Purpose.STATION_MAX),
    "tx": (Purpose.TX,),
    "tx_default": (Purpose.TX_DEFAULT,),
    "station_max": (Purpose.STATION_MAX,),
}
MEASURANDS = ["Current.Import", "Current.Offered", "Voltage", "Energy.Active.Import.Register"]
#: When a charger refuses the measurand list (firmwares refuse the whole setting for one member they do not
#: support), these are dropped one after the other; Current.Import is kept as long as possible.
MEASURAND_DROP_ORDER = ("Current.Offered", "Voltage", "Energy.Active.Import.Register")
#: Many firmwares refuse a sample interval below 10-60 s: the next larger of these is tried.
INTERVAL_STEPS = (10, 15, 30, 60)
NOMINAL_VOLTAGE = 230.0
#: Seconds to wait after a connect for the station's BootNotification (or any other message, which shows it
#: had booted before this connection) before setting it up anyway.
BOOT_WAIT = 10.0
#: A retry after a failed limit waits 0.5 s, doubling per consecutive failure up to this ceiling.
RETRY_CEILING = 60.0
#: At most one TriggerMessage(MeterValues) per charger in this many seconds.
TRIGGER_MIN_INTERVAL = 5.0
#: Seconds after ``ramp_time`` that the sample asked for after a changed limit waits, so that it is taken once the
#: EV has followed (the balancer learns phases and caps only from such samples) and not in the same instant.
TRIGGER_SETTLE = 0.5
#: Consecutive Rejected answers (or timeouts) to TriggerMessage after which it is not asked again on that connection.
TRIGGER_MAX_REFUSALS = 3


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

ControlListener = Callable[[str, ControlState, "float | None"], None]
#: Called as ``listener(charger_id, seconds)`` with how long the charger took to answer a SetChargingProfile.
AnswerListener = Callable[[str, float], None]


@dataclass
class Sent:
    limit: float
    purpose: Purpose
    stack_level: int
    at: float


@dataclass
class ChargerChannel:
    cfg: ChargerConfig
    group: LoadBalancerConfig | None
    phases_wired: tuple[int, ...]
    link: StationLink | None = None
    caps: Capabilities | None = None
    #: The newest limit the balancer wants (A per phase, 0 = paused); None = nothing decided yet.
    wanted: float | None = None
    #: The limit the charger accepted and applies now (None = only its fallback).
    in_force: float | None = None
    #: While a change is unanswered, what the charger may apply: the larger of the old and new limit.
    exposure_limit: float | None = None
    last: Sent | None = None
    last_increase_at: float = float("-inf")
    decrease_accepted_at: float = float("-inf")
    #: The ``decrease_accepted_at`` of the decrease a mains reading has shown done (see ``Delivery._take_proofs``).
    proven_down: float | None = None
    control: ControlState = ControlState.DISCONNECTED_UNKNOWN
    #: Why the control state is what it is ("accepted", "profile Rejected", ...), for the operator view.
    control_reason: str = ""
    fallback_installed: bool = False
    fallback_phases: tuple[int, ...] = ()
    chain_pos: int = 0
    level_pos: int = 0
    fallback_purpose: Purpose | None = None
    stack_levels: list[int] = field(default_factory=list)
    failures: int = 0
    #: Consecutive refusals at the current (purpose, stack level); two move down the chain.
    refusals: int = 0
    #: When the balancer last decided for this charger, and when its current session began (our clock).
    decided_at: float = float("-inf")
    session_seen_at: float = float("-inf")
    over_limit_since: float | None = None
    #: The station cannot take any charging profile we can send (NotImplemented/NotSupported for every
    #: purpose): nothing is sent until it reconnects or reboots.
    gave_up: bool = False
    #: No retry of a failed limit before this (exponential backoff), except a lower one.
    retry_at: float = float("-inf")
    last_attempt: float | None = None
    #: A session started and its first limit is not accepted yet: it may draw what ``may_apply`` says.
    new_session: bool = False
    #: Which accepted boot of its connection the set-up ran for (None: not set up on this connection yet).
    setup_for_boot: int | None = None
    trigger_due: bool = False
    last_trigger_at: float = float("-inf")
    #: A due trigger waits until then: the sample after a changed limit is asked for once the EV has followed.
    trigger_after: float = float("-inf")
    trigger_refusals: int = 0
    trigger_off: bool = False
    #: Dynamic profiles sent to this charger, and how many it accepted or not (for the operator view).
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None

    @property
    def id(self) -> str:
        return self.cfg.id

    @property
    def connector(self) -> int:
        """The EVSE/connector we control; a charger with one outlet uses 1."""
        return self.cfg.socket_connector or 1


class Delivery:
    """Implements the balancer's ``LimitSink``; reports control states back through ``on_control``."""

    def __init__(self, cfg: SiteConfig, state: SiteState, storage: Storage | None = None,
                 on_control: ControlListener | None = None, clock: Callable[[], float] = time.time):
        self.cfg = cfg
        self.settings: SmartChargingConfig = cfg.smart_charging
        self.state = state
        self.storage = storage
        self.on_control = on_control or (lambda *_: None)
        self.on_answer: AnswerListener = lambda *_: None
        self.clock = clock
        self.channels: dict[str, ChargerChannel] = {}
        self.decisions: dict[str, Decision] = {}
        self._group_changed: dict[str, asyncio.Event] = {}
        self._exposure_cache: dict[str, tuple[float, dict[int, float], dict[str, dict[int, float]]]] = {}
        for c in cfg.chargers:
            group = cfg.group_of(c.id)
            self.channels[c.id] = ChargerChannel(c, group, charger_phases(c))
        for g in cfg.load_balancers:
            self._group_changed[g.id] = asyncio.Event()
        self._unsubscribe = state.subscribe(self._on_event)
        self.sent = 0
        self.accepted = 0
        self.rejected = 0

    # -- inputs ---------------------------------------------------------------------------------

    def apply(self, decision: Decision) -> None:
        """LimitSink: remember the newest limit per charger and wake the channels that must act."""
        self.decisions[decision.group_id] = decision
        self._take_proofs(decision)
        for cid, lim in decision.limits.items():
            ch = self.channels.get(cid)
            if ch is None or not lim.controlled:
                continue
            ch.decided_at = self.clock()
            if ch.wanted != lim.limit or ch.new_session:
                # A new session's first limit goes out even when it equals the previous one (0 A while paused):
                # until it is accepted the charger applies its fallback, not that limit.
                ch.wanted = lim.limit
                ch.wake.set()
        self._poke_group(decision.group_id)

    def attach(self, link: StationLink) -> None:
        """A station's session started: (re)start its channel's worker on the new link."""
        ch = self.channels.get(link.id)
        if ch is None:
            return
        if ch.task is not None and not ch.task.done():
            ch.task.cancel()
        ch.link = link
        ch.in_force = ch.exposure_limit = None
        ch.last = None
        ch.chain_pos = ch.level_pos = 0
        ch.failures = ch.refusals = 0
        # A reconnect or a reboot is the one time a station that could not do something is asked again.
        ch.gave_up = False
        ch.retry_at = float("-inf")
        ch.last_attempt = None
        ch.setup_for_boot = None
        ch.trigger_due = ch.trigger_off = False
        ch.trigger_refusals = 0
        ch.new_session = bool(self.state.station(ch.id).transactions.get(ch.connector))
        ch.task = asyncio.create_task(self._run(ch, link), name=f"delivery-{ch.id}")

    async def stop(self) -> None:
        self._unsubscribe()
        await cancel_and_wait(ch.task for ch in self.channels.values())

    def _on_event(self, event: Event) -> None:
        ch = self.channels.get(event.station_id)
        if ch is None:
            return
        if isinstance(event, StationDisconnected):
            ch.link = None
            if ch.task is not None:
                ch.task.cancel()
            # Until its dynamic profile expires the charger keeps the last limit it accepted.
            self._set_control(ch, ControlState.FALLBACK if ch.fallback_installed and ch.in_force is None
                              else ControlState.DISCONNECTED_UNKNOWN, ch.in_force, "disconnected")
            if ch.fallback_installed and ch.in_force is not None:
                asyncio.get_running_loop().call_later(self._expiry_left(ch), self._expired, ch)
        elif isinstance(event, StationBooted):
            link = ch.link
            if link is not None and ch.setup_for_boot is not None and getattr(link, "boots", 0) != ch.setup_for_boot:
                log.info("%s: rebooted on the same connection; setting it up again", ch.id)
                self._record("rebooted", ch)
                self.attach(link)
        elif isinstance(event, (TransactionStarted, TransactionEnded)):
            ch.session_seen_at = self.clock()
            if isinstance(event, TransactionStarted) and event.transaction.connector_id == ch.connector:
                self._session_started(ch)
            if isinstance(event, TransactionEnded):
                ch.new_session = False
                ch.in_force = ch.exposure_limit = None  # a TxProfile dies with its transaction
                ch.last = None if ch.last and ch.last.purpose is Purpose.TX else ch.last
                ch.failures = ch.refusals = 0  # refusals of a profile for the ended transaction say nothing
                self._idle_in_fallback(ch)
            if ch.group is not None:
                self._poke_group(ch.group.id, ch)
            ch.wake.set()
        elif isinstance(event, MeterSampled):
            self._check_obeying(ch, event)
            if ch.group is not None:
                self._poke_group(ch.group.id, ch)

    def _session_started(self, ch: ChargerChannel) -> None:
        """Until its first limit is accepted a new session draws what its charger may apply on its own (its
        fallback, or its maximum without one): the balancer counts that (PENDING), and the first decision for
        the session is sent whatever it is."""
        ch.new_session = True
        ch.trigger_due = True
        if self._purpose(ch) is Purpose.TX:
            ch.in_force = ch.exposure_limit = None  # an old TxProfile belonged to another transaction
            ch.last = None if ch.last and ch.last.purpose is Purpose.TX else ch.last
        if ch.link is None or ch.group is None or not ch.group.active:
            return
        if ch.gave_up:
            self._set_control(ch, ControlState.UNCONTROLLED, None, ch.control_reason)
            return
        may = self._may_apply(ch)
        self._set_control(ch, ControlState.PENDING, may,
                          f"new session: may draw {may:.1f} A until its first limit is accepted")

    def _may_apply(self, ch: ChargerChannel) -> float:
        """A per phase the charger may apply with no limit of ours accepted for its session."""
        if ch.in_force is not None:
            return ch.in_force
        if not ch.fallback_installed:
            return ch.cfg.max_current
        limit = ch.cfg.offline_current
        last = ch.last
        if last is not None and last.purpose is not Purpose.TX and self.clock() < last.at + self.settings.failsafe_ttl:
            limit = max(limit, last.limit)  # a dynamic TxDefault/station maximum still in force
        return min(limit, ch.cfg.max_current)

    def _expiry_left(self, ch: ChargerChannel) -> float:
        if ch.last is None:
            return 0.0
        return max(0.0, ch.last.at + self.settings.failsafe_ttl - self.clock())

    def _expired(self, ch: ChargerChannel) -> None:
        if ch.link is None and ch.fallback_installed:
            ch.in_force = None
            self._set_control(ch, ControlState.FALLBACK, None, "dynamic limit expired; fallback in force")

    def _poke_group(self, group_id: str, ch: ChargerChannel | None = None) -> None:
        """Something in a group changed (one charger's, when ``ch`` is given): refresh exposures, wake gates."""
        if ch is None:
            self._exposure_cache.pop(group_id, None)
        else:
            self._refresh_exposure(ch)
        ev = self._group_changed.get(group_id)
        if ev is not None:
            ev.set()

    # -- the worker ------------------------------------------------------------------------------

    async def _run(self, ch: ChargerChannel, link: StationLink) -> None:
        try:
            await self._wait_for_boot(ch, link)
            await self._setup(ch, link)
            while ch.link is link:
                timeout = self._next_refresh_in(ch)
                await wait_event(ch.wake, timeout)
                ch.wake.clear()
                await self._step(ch, link)
                await self._maybe_trigger(ch, link)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: delivery worker failed", ch.id)
            self._set_control(ch, ControlState.UNCONTROLLED, ch.in_force, "delivery worker failed")

    def _next_refresh_in(self, ch: ChargerChannel) -> float | None:
        if ch.last is None:
            return None
        return max(0.0, ch.last.at + self.settings.failsafe_ttl / 3 - self.clock())

    async def _wait_for_boot(self, ch: ChargerChannel, link: StationLink) -> None:
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
                self._record("setup_without_boot", ch, waited=BOOT_WAIT)
        ch.setup_for_boot = getattr(link, "boots", 0)
        log.info("%s: setting up (%s)", ch.id, getattr(link, "ready_reason", "") or "no boot seen")

    async def _setup(self, ch: ChargerChannel, link: StationLink) -> None:
        ch.caps = caps = await link.read_capabilities(ch.connector)
        if not caps.read:
            log.warning("%s: could not read the charger's capabilities; assuming defaults (stack level 8, A and W)",
                        ch.id)
            self._record("capabilities_unread", ch)
        self._record("capabilities", ch, read=caps.read, **caps.raw)
        if caps.phase_rotation and ch.cfg.phases == 3 and caps.phase_rotation not in ("Unknown", "NotApplicable") \
                and caps.phase_rotation != ch.cfg.phase_rotation:
            log.warning("%s: charger reports phase rotation %s, config says %s; balancing uses the config",
                        ch.id, caps.phase_rotation, ch.cfg.phase_rotation)
            self._record("phase_rotation_mismatch", ch, reported=caps.phase_rotation, configured=ch.cfg.phase_rotation)
        await self._configure_metering(ch, link)
        # The advertised maximum, and one below it for firmwares that refuse their own maximum.
        top = max(caps.max_stack_level if caps.max_stack_level is not None else 8, 1)
        ch.stack_levels = [top, top - 1] if top > 1 else [top]
        await self._install_fallback(ch, link)
        group = ch.group
        if ch.cfg.socket_connector and group is not None:
            result = await link.set_availability(ch.cfg.socket_connector, group.socket_enabled)
            self._record("availability", ch, operative=group.socket_enabled, outcome=result.value)
        if group is None or not group.active:
            # Not balanced (any more): remove the dynamic limits we may have installed, keep the fallback.
            for purpose, pid in DYNAMIC_ID.items():
                await link.clear_profile(profile_id=pid)
            self._record("cleared", ch, reason="not in an active group")
        if ch.new_session and group is not None and group.active:
            may = self._may_apply(ch)
            self._set_control(ch, ControlState.PENDING, may, f"set up with a session: may draw {may:.1f} A until "
                              "its first limit is accepted")
        else:
            self._set_control(ch, ControlState.CONTROLLED if ch.fallback_installed else ControlState.UNCONTROLLED,
                              None, "set up")
        ch.wake.set()

    async def _configure_metering(self, ch: ChargerChannel, link: StationLink) -> None:
        """Asks for MEASURANDS every ``meter_value_interval`` s. A refused list is retried without the members
        the charger may not support; a refused interval with the next larger of INTERVAL_STEPS. What the charger
        accepted is logged and stored (event ``metering``)."""
        wanted_interval = self.settings.meter_value_interval
        measurands: list[str] | None = None
        for candidate in measurand_candidates(MEASURANDS):
            outcome = await link.set_measurands(candidate)
            if outcome.ok:
                measurands = candidate
                break
            if outcome.permanent or outcome in (Outcome.TIMEOUT, Outcome.OFFLINE):
                break
        interval: int | None = None
        for candidate in [wanted_interval, *(i for i in INTERVAL_STEPS if i > wanted_interval)]:
            outcome = await link.set_meter_interval(candidate)
            if outcome.ok:
                interval = candidate
                break
            if outcome.permanent or outcome in (Outcome.TIMEOUT, Outcome.OFFLINE):
                break
        self._record("metering", ch, measurands=measurands, interval=interval, wanted_measurands=MEASURANDS,
                     wanted_interval=wanted_interval)
        if ch.caps is not None:
            ch.caps.raw["accepted_measurands"] = ",".join(measurands) if measurands else ""
            ch.caps.raw["accepted_interval"] = str(interval) if interval is not None else ""
        if measurands != MEASURANDS:
            log.warning("%s: charger refused the measurands %s; %s", ch.id, ",".join(MEASURANDS),
                        f"it samples {','.join(measurands)}" if measurands else
                        "its own defaults apply; phases in use will be learned late")
        if interval != wanted_interval:
            log.warning("%s: charger refused a %d s meter-value interval; %s", ch.id, wanted_interval,
                        f"it accepted {interval} s" if interval is not None else "its own interval applies")

    def _fallback_shape(self, ch: ChargerChannel) -> tuple[int, int | None, tuple[int, ...]]:
        """(numberPhases, phaseToUse, building phases) of the offline fallback this charger can express."""
        caps = ch.caps or Capabilities()
        if ch.cfg.phases == 1:
            return 1, None, ch.phases_wired
        if ch.cfg.offline_phase in ch.phases_wired:
            idx = ch.phases_wired.index(ch.cfg.offline_phase) + 1
            if caps.phase_switching and link_version(ch) == "ocpp2.0.1":
                return 1, idx, (ch.cfg.offline_phase,)
            if idx == 1:
                return 1, None, (ch.cfg.offline_phase,)  # 1.6 numberPhases=1 charges on the charger's L1
        return 3, None, ch.phases_wired

    async def _install_fallback(self, ch: ChargerChannel, link: StationLink) -> None:
        n, phase_to_use, phases = self._fallback_shape(ch)
        limit, unit = self._in_unit(ch, ch.cfg.offline_current, n)
        past = self.clock() - 86400
        tries = [
            ProfileSpec(FALLBACK_ID, 0, Purpose.TX_DEFAULT, 0, limit, unit, n, phase_to_use),
            ProfileSpec(FALLBACK_ID, 0, Purpose.STATION_MAX, 0, limit, unit, n, phase_to_use, start_schedule=past),
        ]
        if CHAINS[ch.cfg.profile_purpose][0] is Purpose.STATION_MAX:
            tries.reverse()
        for spec in tries:
            outcome = await self._set_profile(ch, link, spec)
            self._record("profile", ch, role="fallback", purpose=spec.purpose.value, limit=spec.limit, unit=unit,
                         number_phases=n, outcome=outcome.value)
            if outcome.ok:
                ch.fallback_installed = True
                ch.fallback_phases = phases
                ch.fallback_purpose = spec.purpose
                log.info("%s: offline fallback %.1f %s on %d phase(s) installed as %s", ch.id, limit, unit, n,
                         spec.purpose.value)
                return
        ch.fallback_installed = False
        log.error("%s: charger refused every offline fallback profile; it is uncontrolled when offline", ch.id)

    def _in_unit(self, ch: ChargerChannel, amps: float, number_phases: int) -> tuple[float, str]:
        caps = ch.caps or Capabilities()
        if "A" in caps.rate_units:
            return round(amps, 1), "A"
        return round(amps * self._voltage(ch) * number_phases), "W"

    def _voltage(self, ch: ChargerChannel) -> float:
        sample = self.state.station(ch.id).latest_sample()
        volts = [v for v in (sample.voltage if sample else ()) if v and 150 < v < 300]
        return sum(volts) / len(volts) if volts else NOMINAL_VOLTAGE

    # -- one step: decide what to send now --------------------------------------------------------

    async def _step(self, ch: ChargerChannel, link: StationLink) -> None:
        if ch.wanted is None or ch.group is None or not ch.group.active or ch.gave_up:
            return
        s, now = self.settings, self.clock()
        purpose = self._purpose(ch)
        tx = self.state.station(ch.id).transactions.get(ch.connector)
        if purpose is Purpose.TX and tx is None:
            self._idle_in_fallback(ch)  # no session: the fallback TxDefaultProfile caps whatever starts next
            return
        if ch.decided_at < ch.session_seen_at:
            return  # the balancer has not seen this session yet; its next decision wakes us
        current, target = ch.in_force, ch.wanted
        base = current if current is not None else ch.cfg.offline_current  # what may be applied now
        refresh_due = ch.last is not None and now >= ch.last.at + s.failsafe_ttl / 3
        if target <= base or self._within_own_exposure(ch, target, now):
            send = target  # a decrease (or the first limit, below the fallback) goes out at once
        else:
            hold_until = hold_until_of(ch, s)
            gated = None
            if current is None and target - base < s.deadband:
                gated = target  # the session's first limit replaces its fallback, however small the step
            elif target - base >= s.deadband and now >= hold_until:
                gated = self._gate(ch, target, base)
            elif now < hold_until:
                self._wake_later(ch, hold_until - now)
            if gated is not None:
                send = gated
            elif refresh_due and current is not None:
                # The refresh goes out anyway: an increase of at least a quarter of the deadband that it held
                # back rides along at no extra message (as far as break before make allows), so the deadband
                # never idles the fuse for long; smaller ones would only follow the meter's noise.
                send = current
                if now >= hold_until and target - base >= s.deadband / 4:
                    send = self._gate(ch, target, base) or current
            else:
                if target - base >= s.deadband and now >= hold_until:
                    await self._wait_for_group(ch)  # break before make: wait for others to come down
                return
        if current is not None and send == current and not refresh_due and not ch.new_session:
            return
        if now < ch.retry_at and not (ch.last_attempt is not None and send < ch.last_attempt):
            self._wake_later(ch, ch.retry_at - now)  # backing off after a failure; a lower limit goes out at once
            return
        await self._send(ch, link, send, purpose, tx.transaction_id if tx else None)
        if target - send >= s.deadband and ch.wanted == target:
            # Part of the increase is still held back (a refresh could not carry it, or only part of it fitted).
            # A decision with the same wanted limit wakes nobody, so come back when it may go: a paused car's
            # turn once waited 20 s, until its next refresh, with the fuse idle.
            wait = hold_until_of(ch, s) - self.clock()
            if wait > 0:
                self._wake_later(ch, wait)
            else:
                await self._wait_for_group(ch)

    def _within_own_exposure(self, ch: ChargerChannel, target: float, now: float) -> bool:
        """A charger not under control is already counted at the most it may draw (its ``max_current``): any
        limit up to that lowers what the group must allow for, so break-before-make has nothing to wait for.
        Gating it as an increase over its fallback deadlocked two 1.6 chargers whose first TxProfile each was
        refused (sent before they had registered the transaction): each waited for the other's 32 A to come
        down, and both stayed uncontrolled with their cars paused."""
        if ch.control not in (ControlState.UNCONTROLLED, ControlState.DISCONNECTED_UNKNOWN,
                              ControlState.NOT_OBEYING):
            return False
        exposed = self.exposure(ch, now)
        return bool(exposed) and all(target <= amps for amps in exposed.values())

    def _idle_in_fallback(self, ch: ChargerChannel) -> None:
        """A connected charger with no session and its fallback installed is under control: it can only
        start at its offline current. (A TxProfile it refused for a transaction it had already ended, e.g.
        one that ended while we were down, must not leave it uncontrolled.)"""
        if ch.link is None or not ch.fallback_installed or ch.in_force is not None or ch.gave_up:
            return
        if ch.control in (ControlState.UNCONTROLLED, ControlState.PENDING):
            self._set_control(ch, ControlState.CONTROLLED, None, "no session; its offline fallback applies")

    def _wake_later(self, ch: ChargerChannel, delay: float) -> None:
        asyncio.get_running_loop().call_later(max(0.05, delay), ch.wake.set)

    async def _wait_for_group(self, ch: ChargerChannel) -> None:
        """Blocked by break-before-make: wait for another charger's acceptance or new draw, then retry."""
        ev = self._group_changed[ch.group.id]
        ev.clear()
        await wait_event(ev, max(0.5, self.settings.ramp_time / 4))
        ch.wake.set()

    def _purpose(self, ch: ChargerChannel) -> Purpose:
        chain = CHAINS[ch.cfg.profile_purpose]
        return chain[min(ch.chain_pos, len(chain) - 1)]

    def exposure(self, ch: ChargerChannel, now: float) -> dict[int, float]:
        """A per building phase this charger may draw right now, as far as we can tell."""
        decision = self.decisions.get(ch.group.id) if ch.group else None
        lim = decision.limits.get(ch.id) if decision else None
        if lim is not None and not lim.controlled:
            return {p: lim.counted or lim.limit for p in lim.phases}
        if ch.control in (ControlState.UNCONTROLLED, ControlState.DISCONNECTED_UNKNOWN, ControlState.NOT_OBEYING):
            counted = lim.counted if lim is not None else ch.cfg.max_current
            return {p: max(counted, ch.cfg.max_current if ch.control is not ControlState.NOT_OBEYING else counted)
                    for p in ch.phases_wired}
        limit = ch.exposure_limit if ch.exposure_limit is not None else ch.in_force
        if limit is not None and lim is not None and lim.counted < limit <= lim.limit:
            limit = lim.counted  # a trimmed car at its cap lends the headroom it does not draw
        if limit is None:
            # Only its fallback applies. Idle, it draws nothing; like the balancer we do not reserve for a car
            # that may arrive (it starts at the fallback current until the next decision).
            has_session = bool(self.state.station(ch.id).transactions)
            limit = self._may_apply(ch) if has_session else 0.0
        phases = lim.phases if lim is not None and lim.phases else ch.phases_wired
        out = {p: limit for p in phases}
        if now - ch.decrease_accepted_at < self.settings.ramp_time and ch.proven_down != ch.decrease_accepted_at:
            for p, amps in self._draw(ch).items():
                out[p] = max(out.get(p, 0.0), amps)
        return out

    def _take_proofs(self, decision: Decision) -> None:
        """Remembers which accepted decreases a mains reading taken after them showed done, for the limit each
        charger is at now: their old draw need not be counted for the rest of ``ramp_time``. A proof stays
        valid until the next decrease (the car only comes down after it), even when a later reading, with a new
        car starting beside it, could not show it again."""
        for cid, (limit, at) in decision.proven_down.items():
            ch = self.channels.get(cid)
            if ch is not None and ch.in_force == limit and at >= ch.decrease_accepted_at:
                ch.proven_down = ch.decrease_accepted_at

    def _draw(self, ch: ChargerChannel) -> dict[int, float]:
        sample = self.state.station(ch.id).latest_sample()
        if sample is None:
            return {}
        return {ch.phases_wired[i]: a for i, a in enumerate(sample.current[:len(ch.phases_wired)]) if a is not None}

    def _gate(self, ch: ChargerChannel, target: float, current: float) -> float | None:
        """The largest limit up to ``target`` that keeps every phase within budget; None if no useful one."""
        decision = self.decisions.get(ch.group.id)
        if decision is None:
            return None
        now = self.clock()
        lim = decision.limits.get(ch.id)
        phases = lim.phases if lim is not None and lim.phases else ch.phases_wired
        room = float("inf")
        totals, each = self._group_exposure(ch.group.id, now)
        mine = each.get(ch.id, {})
        for p in phases:
            others = totals.get(p, 0.0) - mine.get(p, 0.0)
            room = min(room, decision.budget.get(p, 0.0) - others)
        allowed = min(target, room)
        if target == 0:
            return 0.0
        group_min = ch.group.min_current
        if allowed < group_min:
            return None
        allowed = floor_step(allowed)  # the balancer's 0.1 A grid: 24 - 16.1 is 7.899999..., still 7.9
        if allowed <= current + 1e-9:
            return None
        return allowed

    def _group_exposure(self, group_id: str, now: float) -> tuple[dict[int, float], dict[str, dict[int, float]]]:
        """Every channel's exposure in a group and their sum per phase, computed once and reused until
        something that can raise an exposure changes (a decision, a sample, a send, an answer), so that
        gating N increases costs O(N), not O(N^2). Exposures only fall as time passes (ramp windows end),
        so a reused sum errs on the safe side; it is recomputed at least every 0.25 s."""
        cached = self._exposure_cache.get(group_id)
        if cached is not None and now - cached[0] < 0.25:
            return cached[1], cached[2]
        each = {o.id: self.exposure(o, now) for o in self._group_channels(group_id)}
        totals: dict[int, float] = {}
        for exp in each.values():
            for p, amps in exp.items():
                totals[p] = totals.get(p, 0.0) + amps
        self._exposure_cache[group_id] = (now, totals, each)
        return totals, each

    def _refresh_exposure(self, ch: ChargerChannel) -> None:
        """Updates one channel's share of its group's cached exposure sum (O(1) per change)."""
        if ch.group is None:
            return
        cached = self._exposure_cache.get(ch.group.id)
        if cached is None:
            return
        _, totals, each = cached
        old = each.get(ch.id, {})
        new = each[ch.id] = self.exposure(ch, self.clock())
        for p in set(old) | set(new):
            totals[p] = totals.get(p, 0.0) - old.get(p, 0.0) + new.get(p, 0.0)

    def _group_channels(self, group_id: str):
        return (c for c in self.channels.values() if c.group is not None and c.group.id == group_id)

    async def _set_profile(self, ch: ChargerChannel, link: StationLink, spec: ProfileSpec) -> Outcome:
        """Sends one profile and reports how long the charger took to answer (the balancer counts a new
        session at its fallback at once on a charger slower than an EV takes to start)."""
        sent = self.clock()
        outcome = await link.set_profile(spec)
        if outcome.ok or outcome is Outcome.TIMEOUT or outcome is Outcome.REJECTED:
            self.on_answer(ch.id, self.clock() - sent)
        return outcome

    async def _send(self, ch: ChargerChannel, link: StationLink, amps: float, purpose: Purpose,
                    transaction_id: str | None) -> None:
        s, now = self.settings, self.clock()
        n = ch.cfg.phases
        limit, unit = self._in_unit(ch, amps, n)
        start = now - s.clock_skew_allowance
        ttl = s.failsafe_ttl
        levels = ch.stack_levels or [1]
        level = levels[min(ch.level_pos, len(levels) - 1)]
        spec = ProfileSpec(DYNAMIC_ID[purpose], level, purpose,
                           0 if purpose is Purpose.STATION_MAX else ch.connector, limit, unit, n,
                           transaction_id=transaction_id if purpose is Purpose.TX else None,
                           start_schedule=start, duration=int(ttl + s.clock_skew_allowance), valid_to=now + ttl)
        previous = ch.in_force
        decrease = previous is None or amps < previous
        applied = previous if previous is not None else self._may_apply(ch)  # what it may apply meanwhile
        ch.exposure_limit = max(applied, amps)
        ch.last_attempt = amps
        self._refresh_exposure(ch)
        if amps != previous:
            self._set_control(ch, ControlState.PENDING, applied, f"sending {amps:.1f} A")
        self.sent += 1
        ch.sent += 1
        outcome = await self._set_profile(ch, link, spec)
        self._record("profile", ch, role="dynamic", purpose=purpose.value, stack_level=level, limit=limit, unit=unit,
                     outcome=outcome.value)
        if outcome.ok:
            self.accepted += 1
            ch.accepted += 1
            refresh = ch.last is not None and ch.last.limit == amps and not ch.new_session
            ch.in_force, ch.exposure_limit, ch.failures, ch.refusals = amps, None, 0, 0
            ch.new_session = False
            ch.retry_at = float("-inf")
            ch.last = Sent(amps, purpose, level, now)
            if decrease and previous is not None:
                ch.decrease_accepted_at = now
            elif previous is not None and amps > previous:
                ch.last_increase_at = now
            log.log(logging.DEBUG if refresh else logging.INFO, "%s: %s %.1f A accepted (%s, stack %d)",
                    ch.id, "refreshed" if refresh else "limit", amps, purpose.value, level)
            self._set_control(ch, ControlState.CONTROLLED, amps, "accepted")
            self._poke_group(ch.group.id, ch)
            if not refresh:
                # A fresh sample shows how the car follows the new limit, once it has had ramp_time to: one
                # taken at once shows the old draw, which the balancer cannot learn phases or caps from, and a
                # 60 s charger's next periodic sample may be a minute away.
                ch.trigger_due = True
                ch.trigger_after = self.clock() + s.ramp_time + TRIGGER_SETTLE
                if s.confirm_with_composite:
                    await self._confirm(ch, link, amps, unit)
            return
        self.rejected += 1
        ch.rejected += 1
        ch.failures += 1
        ch.exposure_limit = None
        changed = False
        if outcome.permanent:
            # Not implemented for this purpose: permanent for this connection; the next purpose, or stop.
            ch.refusals = 0
            if ch.chain_pos < len(CHAINS[ch.cfg.profile_purpose]) - 1:
                await self._next_purpose(ch, link)
                changed = True
            else:
                self._give_up(ch, purpose)
                return
        elif outcome in (Outcome.REJECTED, Outcome.ERROR):
            # Some chargers refuse their own maximum stack level: try lower ones, then the next purpose.
            # One refusal may be a race (a TxProfile right after StartTransaction), so it takes two.
            ch.refusals += 1
            if ch.refusals >= 2:
                ch.refusals = 0
                if ch.level_pos < len(levels) - 1:
                    ch.level_pos += 1
                    changed = True
                elif ch.chain_pos < len(CHAINS[ch.cfg.profile_purpose]) - 1:
                    await self._next_purpose(ch, link)
                    changed = True
        if changed:
            ch.failures = 0  # something new to try: retry soon, and back off afresh from there
        # 0.5 s after the first failure at a (purpose, stack level), doubling per consecutive failure to the
        # ceiling; a refusal of the exhausted chain no longer restarts the backoff.
        delay = min(RETRY_CEILING, 0.5 * 2.0 ** max(0, ch.failures - 1))
        ch.retry_at = now + delay
        log.warning("%s: limit %.1f A %s (%s, stack %d); retrying in %.1f s, meanwhile uncontrolled", ch.id, amps,
                    outcome.value, purpose.value, level, delay)
        self._set_control(ch, ControlState.UNCONTROLLED, ch.in_force, f"profile {outcome.value}")
        self._wake_later(ch, delay)

    def _give_up(self, ch: ChargerChannel, purpose: Purpose) -> None:
        """Every purpose we may use is not implemented: stop sending, count it at its maximum, tell the operator."""
        ch.gave_up = True
        tried = ", ".join(p.value for p in CHAINS[ch.cfg.profile_purpose])
        log.error("%s: charger does not implement SetChargingProfile for any purpose we can use (%s): it is "
                  "not controlled and is counted at its max_current %.1f A; asked again only after it reconnects "
                  "or reboots", ch.id, tried, ch.cfg.max_current)
        self._record("profiles_not_supported", ch, purposes=tried, counted=ch.cfg.max_current)
        self._set_control(ch, ControlState.UNCONTROLLED, None,
                          "charger does not support charging profiles; not retried until it reconnects or reboots")

    async def _maybe_trigger(self, ch: ChargerChannel, link: StationLink) -> None:
        """Asks for a meter sample (TriggerMessage MeterValues) after a session started or a changed limit was
        accepted, once its EV has had ramp_time to follow: at most every TRIGGER_MIN_INTERVAL s, never again on
        this connection once the charger said it cannot (NotImplemented/NotSupported) or refused
        TRIGGER_MAX_REFUSALS times in a row."""
        if not ch.trigger_due or ch.trigger_off:
            return
        if ch.new_session and ch.control is ControlState.PENDING:
            return  # the session's first limit goes first: one call at a time, and a slow charger takes seconds
        now = self.clock()
        wait = max(ch.last_trigger_at + TRIGGER_MIN_INTERVAL, ch.trigger_after) - now
        if wait > 0:
            self._wake_later(ch, wait)
            return
        ch.trigger_due = False
        if self.state.station(ch.id).transactions.get(ch.connector) is None:
            return
        ch.last_trigger_at = now
        outcome = await link.trigger_meter_values(ch.connector)
        if outcome.ok:
            ch.trigger_refusals = 0
        elif outcome.permanent:
            ch.trigger_off = True
        elif outcome in (Outcome.REJECTED, Outcome.TIMEOUT, Outcome.ERROR):
            ch.trigger_refusals += 1
            if ch.trigger_refusals >= TRIGGER_MAX_REFUSALS:
                ch.trigger_off = True
                log.warning("%s: TriggerMessage(MeterValues) %s %d times in a row; not asked again on this "
                            "connection", ch.id, outcome.value, ch.trigger_refusals)
                self._record("trigger_refused", ch, times=ch.trigger_refusals)

    async def _next_purpose(self, ch: ChargerChannel, link: StationLink) -> None:
        old = self._purpose(ch)
        ch.chain_pos += 1
        ch.level_pos = 0
        new = self._purpose(ch)
        log.warning("%s: charger refuses %s; trying %s", ch.id, old.value, new.value)
        self._record("purpose_fallback", ch, refused=old.value, next=new.value)
        if new is Purpose.STATION_MAX and ch.fallback_purpose is Purpose.TX_DEFAULT:
            # A station-wide maximum is combined with the TxDefault fallback by minimum, so the fallback
            # must move to a lower-stack station maximum, or it would cap every dynamic limit.
            await link.clear_profile(profile_id=FALLBACK_ID)
            ch.fallback_installed = False
            await self._install_fallback_as_station_max(ch, link)

    async def _install_fallback_as_station_max(self, ch: ChargerChannel, link: StationLink) -> None:
        n, phase_to_use, phases = self._fallback_shape(ch)
        limit, unit = self._in_unit(ch, ch.cfg.offline_current, n)
        spec = ProfileSpec(FALLBACK_ID, 0, Purpose.STATION_MAX, 0, limit, unit, n, phase_to_use,
                           start_schedule=self.clock() - 86400)
        outcome = await self._set_profile(ch, link, spec)
        self._record("profile", ch, role="fallback", purpose=spec.purpose.value, limit=limit, unit=unit,
                     outcome=outcome.value)
        ch.fallback_installed = outcome.ok
        ch.fallback_phases = phases
        ch.fallback_purpose = Purpose.STATION_MAX

    async def _confirm(self, ch: ChargerChannel, link: StationLink, amps: float, unit: str) -> None:
        composite = await link.get_composite(ch.connector, 60, unit)
        if composite is None:
            return  # not answered; a charger that cannot answer it is not asked again (csms.link)
        applied = composite.limit
        if applied is None:
            # An accepted profile and an empty composite schedule: the charger does not say it applies anything.
            log.warning("%s: composite schedule has no periods after %.1f A was accepted", ch.id, amps)
            self._record("composite_mismatch", ch, applied=None, wanted=amps, reason="no periods")
        elif unit == "A" and abs(applied - amps) > 0.5:
            log.warning("%s: composite schedule applies %.1f A, we set %.1f A", ch.id, applied, amps)
            self._record("composite_mismatch", ch, applied=applied, wanted=amps)

    # -- obeying --------------------------------------------------------------------------------

    def _check_obeying(self, ch: ChargerChannel, event: MeterSampled) -> None:
        s = self.settings
        limit = ch.in_force
        if limit is None or ch.control not in (ControlState.CONTROLLED, ControlState.NOT_OBEYING):
            ch.over_limit_since = None
            return
        drawn = max((a for a in event.sample.current if a is not None), default=0.0)
        now = event.at
        if drawn <= limit + s.obey_tolerance:
            ch.over_limit_since = None
            if ch.control is ControlState.NOT_OBEYING:
                self._set_control(ch, ControlState.CONTROLLED, limit, "draws within its limit again")
            return
        if now - max(ch.decrease_accepted_at, ch.last.at if ch.last else now) < s.ramp_time:
            return  # still ramping down
        if ch.over_limit_since is None:
            ch.over_limit_since = now
        if now - ch.over_limit_since >= s.obey_grace and ch.control is not ControlState.NOT_OBEYING:
            log.warning("%s: draws %.1f A against a %.1f A limit for %.0f s: not obeying", ch.id, drawn, limit,
                        now - ch.over_limit_since)
            self._set_control(ch, ControlState.NOT_OBEYING, limit, f"draws {drawn:.1f} A over its {limit:.1f} A limit")

    # -- bookkeeping ----------------------------------------------------------------------------

    def _set_control(self, ch: ChargerChannel, control: ControlState, limit: float | None, reason: str) -> None:
        self._refresh_exposure(ch)
        changed = control is not ch.control
        ch.control = control
        ch.control_reason = reason
        if changed:
            level = logging.WARNING if control in (ControlState.UNCONTROLLED, ControlState.NOT_OBEYING) else logging.INFO
            if control is not ControlState.PENDING:
                log.log(level, "%s: control %s (%s)", ch.id, control.value, reason)
                self._record("control", ch, state=control.value, reason=reason, limit=limit)
        self.on_control(ch.id, control, limit)

    def _record(self, kind: str, ch: ChargerChannel, **detail) -> None:
        if self.storage is not None:
            self.storage.write_nowait(log_event(kind, self.clock(), station_id=ch.id,
                                                group_id=ch.group.id if ch.group else None, **detail), kind)


def hold_until_of(ch: ChargerChannel, s: SmartChargingConfig) -> float:
    """When the charger's next increase may go out: ``increase_interval`` after its last increase and its own
    ``min_update_interval`` after its last profile (none before its first limit replaces the fallback)."""
    if ch.in_force is None:
        return float("-inf")
    return max(ch.last_increase_at + s.increase_interval,
               (ch.last.at if ch.last else float("-inf")) + ch.cfg.min_update_interval)


def link_version(ch: ChargerChannel) -> str | None:
    version = getattr(ch.link, "version", None)
    return None if version is None else str(version)
