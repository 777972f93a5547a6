"""The delivery policy: given a charger's state, the balancer's decision, its group's exposure and the time,
what to do now. Pure: no clock, no asyncio, no link, no storage; the worker (:mod:`.delivery`) asks and acts.

Safety rules, in the order they bind:

* A decrease goes out at once; nothing delays it (not the deadband, not the increase interval, not a
  charger's minimum update interval).
* Break before make: an increase is sent only while, on each phase it draws on, the sum over the group of
  every other charger's exposure (:mod:`.exposure`) plus the new limit fits the decision's budget, and the
  same holds on every circuit (sub-board) above the charger (:func:`circuit_room`); otherwise the charger
  waits for its group to change.
* An increase waits ``increase_interval`` after the last one and the charger's own ``min_update_interval``
  after its last profile (hold until); a step smaller than the deadband waits for the next refresh.
* After a failure the same or a higher limit waits out the backoff; a lower one goes out at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from csms.balancer.grid import floor_step
from csms.balancer.model import ControlState, Decision
from csms.config import SmartChargingConfig
from csms.domain.link import Purpose

from .chain import purpose_of
from .channel import ChargerChannel
from .exposure import UNSTEERED, ExposureBook


class Step(NamedTuple):
    """What one look at a charger decides (several may hold: a limit to send and a time to look again).
    Immutable; a named tuple because one is made per charger and decision."""

    #: Send this limit (A per phase) now.
    send: float | None = None
    #: Look again at these times (the end of a hold, of a backoff).
    wake_at: tuple[float, ...] = ()
    #: Break before make: look again when another charger of the group has changed (or after a while).
    wait_for_group: bool = False
    #: No session for its TxProfile: its fallback caps whatever starts next (see ``Delivery._idle_in_fallback``).
    idle: bool = False


NOTHING = Step()


def hold_until_of(ch: ChargerChannel, s: SmartChargingConfig) -> float:
    """When the charger's next increase may go out: ``increase_interval`` after its last increase and its own
    ``min_update_interval`` after its last profile (none before its first limit replaces the fallback)."""
    if ch.in_force is None:
        return float("-inf")
    return max(ch.last_increase_at + s.increase_interval,
               (ch.last.at if ch.last else float("-inf")) + ch.cfg.min_update_interval)


def within_own_exposure(ch: ChargerChannel, target: float, now: float, book: ExposureBook) -> bool:
    """A charger not under control is already counted at the most it may draw (its ``max_current``): any
    limit up to that lowers what the group must allow for, so break-before-make has nothing to wait for.
    Gating it as an increase over its fallback deadlocked two 1.6 chargers whose first TxProfile each was
    refused (sent before they had registered the transaction): each waited for the other's 32 A to come
    down, and both stayed uncontrolled with their cars paused."""
    if ch.control not in UNSTEERED:
        return False
    exposed = book.of(ch, now)
    return bool(exposed) and all(target <= amps for amps in exposed.values())


def gate(ch: ChargerChannel, target: float, current: float, now: float, book: ExposureBook) -> float | None:
    """The largest limit up to ``target`` that keeps every phase within budget; None if no useful one."""
    decision = book.decisions.get(ch.group.id)
    if decision is None:
        return None
    lim = decision.limits.get(ch.id)
    phases = lim.phases if lim is not None and lim.phases else ch.phases_wired
    room = float("inf")
    totals, each = book.totals(ch.group.id, now)
    mine = each.get(ch.id, {})
    for p in phases:
        others = totals.get(p, 0.0) - mine.get(p, 0.0)
        room = min(room, decision.budget.get(p, 0.0) - others)
    if decision.circuits:
        room = min(room, circuit_room(ch.id, phases, decision, each))
    allowed = min(target, room)
    if target == 0:
        return 0.0
    if allowed < ch.group.min_current:
        return None
    allowed = floor_step(allowed)  # the balancer's 0.1 A grid: 24 - 16.1 is 7.899999..., still 7.9
    if allowed <= current + 1e-9:
        return None
    return allowed


def circuit_room(cid: str, phases: tuple[int, ...], decision: Decision, each: dict[str, dict[int, float]]) -> float:
    """The room break-before-make leaves a charger on the circuits above it (:mod:`csms.balancer.circuits`): per
    circuit and phase, its budget less every other charger's exposure under it. A trimmed car is counted at its
    limit here, not at its draw: the headroom it lends is lent on the main fuse only, where the mains meter sees
    it used, and a circuit without a meter would not."""
    room = float("inf")
    for load in decision.circuits.values():
        if cid not in load.chargers:
            continue
        for p in phases:
            others = 0.0
            for o in load.chargers:
                if o == cid:
                    continue
                others += each.get(o, {}).get(p, 0.0)
                lim = decision.limits.get(o)
                if lim is not None and lim.controlled and 0 < lim.counted < lim.limit and p in lim.phases:
                    others += lim.limit - lim.counted
            room = min(room, load.budget.get(p, 0.0) - others)
    return room


def step(ch: ChargerChannel, now: float, s: SmartChargingConfig, book: ExposureBook, tx_running: bool) -> Step:
    """What to send the charger now, if anything, and when to look again. ``tx_running``: a transaction runs
    on its connector."""
    if ch.wanted is None or ch.group is None or not ch.group.active or ch.gave_up:
        return NOTHING
    if purpose_of(ch) is Purpose.TX and not tx_running:
        return Step(idle=True)
    if ch.decided_at < ch.session_seen_at:
        return NOTHING  # the balancer has not seen this session yet; its next decision wakes us
    current, target = ch.in_force, ch.wanted
    base = current if current is not None else ch.cfg.offline_current  # what may be applied now
    refresh_due = ch.last is not None and now >= ch.last.at + s.failsafe_ttl / 3
    wakes: tuple[float, ...] = ()
    if target <= base or within_own_exposure(ch, target, now, book):
        send = target  # a decrease (or the first limit, below the fallback) goes out at once
    else:
        hold_until = hold_until_of(ch, s)
        gated = None
        if current is None and target - base < s.deadband:
            gated = target  # the session's first limit replaces its fallback, however small the step
        elif target - base >= s.deadband and now >= hold_until:
            gated = gate(ch, target, base, now, book)
        elif now < hold_until:
            wakes = (hold_until,)
        if gated is not None:
            send = gated
        elif refresh_due and current is not None:
            # The refresh goes out anyway: an increase of at least a quarter of the deadband that it held
            # back rides along at no extra message (as far as break before make allows), so the deadband
            # never idles the fuse for long; smaller ones would only follow the meter's noise.
            send = current
            if now >= hold_until and target - base >= s.deadband / 4:
                send = gate(ch, target, base, now, book) or current
        else:
            # Break before make: wait for others to come down.
            return Step(wake_at=wakes, wait_for_group=target - base >= s.deadband and now >= hold_until)
    if current is not None and send == current and not refresh_due and not ch.new_session:
        return Step(wake_at=wakes)
    if now < ch.retry_at and not (ch.last_attempt is not None and send < ch.last_attempt):
        return Step(wake_at=(*wakes, ch.retry_at))  # backing off after a failure; a lower limit goes out at once
    return Step(send=send, wake_at=wakes)


def after_send(ch: ChargerChannel, target: float, sent: float, now: float, s: SmartChargingConfig) -> Step:
    """Part of an increase still held back (a refresh could not carry it, or only part of it fitted): a decision
    with the same wanted limit wakes nobody, so come back when it may go. A paused car's turn once waited 20 s,
    until its next refresh, with the fuse idle. Nothing is held back once the whole target went out (with a
    deadband of 0 every send, a decrease too, otherwise left its worker waiting for the group)."""
    if sent >= target or target - sent < s.deadband or ch.wanted != target:
        return NOTHING
    hold_until = hold_until_of(ch, s)
    if hold_until > now:
        return Step(wake_at=(hold_until,))
    return Step(wait_for_group=True)


@dataclass(frozen=True)
class Obedience:
    """The verdict on one sample of a controlled charger's draw."""

    over_limit_since: float | None
    #: The control state it moves to and why (None: unchanged), and what to log about it.
    control: ControlState | None = None
    reason: str = ""
    note: str = ""


def judge_draw(ch: ChargerChannel, drawn: float, at: float, s: SmartChargingConfig) -> Obedience:
    """A charger that draws over its limit in force (plus ``obey_tolerance``) for ``obey_grace`` once its EV
    has had ``ramp_time`` to follow is not obeying; one back within its limit is controlled again."""
    limit = ch.in_force
    if limit is None or ch.control not in (ControlState.CONTROLLED, ControlState.NOT_OBEYING):
        return Obedience(None)
    if drawn <= limit + s.obey_tolerance:
        if ch.control is ControlState.NOT_OBEYING:
            return Obedience(None, ControlState.CONTROLLED, "draws within its limit again")
        return Obedience(None)
    if at - max(ch.decrease_accepted_at, ch.limit_sent_at) < s.ramp_time:
        return Obedience(ch.over_limit_since)  # still ramping down
    since = ch.over_limit_since if ch.over_limit_since is not None else at
    if at - since >= s.obey_grace and ch.control is not ControlState.NOT_OBEYING:
        return Obedience(since, ControlState.NOT_OBEYING, f"draws {drawn:.1f} A over its {limit:.1f} A limit",
                         f"draws {drawn:.1f} A against a {limit:.1f} A limit for {at - since:.0f} s: not obeying")
    return Obedience(since)
