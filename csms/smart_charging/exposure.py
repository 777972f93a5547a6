"""Exposure: what each charger may draw right now, as far as the delivery can tell, and its group's sum.

Break-before-make sends an increase only while, on each phase it draws on, every other charger's exposure
plus the new limit fits the decision's budget. A charger's exposure is the larger of what it may apply (its
accepted limit, or the old one while a decrease is unanswered) and its measured draw, until ``ramp_time``
after its decrease was accepted or until the balancer's decision carries the mains meter's proof that it is
down (``Decision.proven_down``). Everything here is pure: time and the stations' readings are inputs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from csms.balancer.model import ChargerLimit, ControlState, Decision
from csms.balancer.reserve import most_drawn
from csms.domain.link import Purpose

from .channel import ChargerChannel

#: Control states in which the delivery cannot vouch for any limit of the charger.
UNSTEERED = (ControlState.UNCONTROLLED, ControlState.DISCONNECTED_UNKNOWN, ControlState.NOT_OBEYING)
#: A group's exposure sum is reused at most this long (s); it only errs on the safe side meanwhile.
CACHE_FOR = 0.25


class Readings(Protocol):
    """What the stations report that exposure depends on (the live state, or a test's stand-in)."""

    def session(self, ch: ChargerChannel) -> bool:
        """Whether a transaction runs on the charger's station."""

    def draw(self, ch: ChargerChannel) -> dict[int, float]:
        """Its latest sampled draw, A per building phase (empty: no sample)."""


def may_apply(ch: ChargerChannel, now: float, failsafe_ttl: float) -> float:
    """A per phase the charger may apply with no limit of ours accepted for its session: its fallback (or a
    dynamic TxDefault/station maximum still in force above it), or its maximum without a fallback."""
    if ch.in_force is not None:
        return ch.in_force
    if not ch.fallback_installed:
        return ch.cfg.max_current
    limit = ch.cfg.offline_current
    last = ch.last
    if last is not None and last.purpose is not Purpose.TX and now < last.at + failsafe_ttl:
        limit = max(limit, last.limit)
    return min(limit, ch.cfg.max_current)


def exposure(ch: ChargerChannel, lim: ChargerLimit | None, now: float, ramp_time: float, failsafe_ttl: float,
             readings: Readings) -> dict[int, float]:
    """A per building phase this charger may draw right now, given the balancer's latest limit for it."""
    if lim is not None and not lim.controlled:
        return {p: lim.counted or lim.limit for p in lim.phases}
    if ch.control in UNSTEERED:
        counted = lim.counted if lim is not None else ch.cfg.max_current
        if ch.control is not ControlState.NOT_OBEYING:
            # It refused or did not answer its last limit (it may have applied it): no limit is known in force.
            counted = max(counted, most_drawn(ch.control, None, ch.cfg.max_current))
        return dict.fromkeys(ch.phases_wired, counted)
    limit = ch.exposure_limit if ch.exposure_limit is not None else ch.in_force
    if limit is not None and lim is not None and lim.counted < limit <= lim.limit:
        limit = lim.counted  # a trimmed car at its cap lends the headroom it does not draw
    if limit is None:
        # Only its fallback applies. Idle, it draws nothing; like the balancer we do not reserve for a car
        # that may arrive (it starts at the fallback current until the next decision).
        limit = may_apply(ch, now, failsafe_ttl) if readings.session(ch) else 0.0
    phases = lim.phases if lim is not None and lim.phases else ch.phases_wired
    out = dict.fromkeys(phases, limit)
    if now - ch.decrease_accepted_at < ramp_time and ch.proven_down != ch.decrease_accepted_at:
        for p, amps in readings.draw(ch).items():
            out[p] = max(out.get(p, 0.0), amps)
    return out


class ExposureBook:
    """The latest decision per group and every charger's exposure, with each group's sum per phase.

    The sum is computed once and reused until something that can raise an exposure changes (a decision, a
    sample, a send, an answer: :meth:`refresh` or :meth:`forget`), so that gating N increases costs O(N), not
    O(N^2). Exposures only fall as time passes (ramp windows end), so a reused sum errs on the safe side; it is
    recomputed at least every ``CACHE_FOR`` s.
    """

    def __init__(self, channels: Iterable[ChargerChannel], ramp_time: float, failsafe_ttl: float,
                 readings: Readings):
        self.ramp_time = ramp_time
        self.failsafe_ttl = failsafe_ttl
        self.readings = readings
        self.decisions: dict[str, Decision] = {}
        self.channels: dict[str, ChargerChannel] = {}
        self._members: dict[str, list[ChargerChannel]] = {}
        self._cache: dict[str, tuple[float, dict[int, float], dict[str, dict[int, float]]]] = {}
        self.regroup(channels)

    def regroup(self, channels: Iterable[ChargerChannel]) -> None:
        """The chargers and their groups (a reloaded config): every sum is recomputed when next asked, and a
        decision for a group that no longer exists is forgotten (its limits reach no charger)."""
        self.channels = {ch.id: ch for ch in channels}
        self._members = {}
        for ch in self.channels.values():
            if ch.group is not None:
                self._members.setdefault(ch.group.id, []).append(ch)
        self.decisions = {gid: d for gid, d in self.decisions.items() if gid in self._members}
        self._cache.clear()

    def take(self, decision: Decision) -> None:
        """Keeps the group's newest decision and the proofs it carries."""
        self.decisions[decision.group_id] = decision
        self.take_proofs(decision)

    def take_proofs(self, decision: Decision) -> None:
        """Remembers which accepted decreases a mains reading taken after them showed done, for the limit each
        charger is at now: their old draw need not be counted for the rest of ``ramp_time``. A proof stays
        valid until the next decrease (the car only comes down after it), even when a later reading, with a new
        car starting beside it, could not show it again."""
        for cid, (limit, at) in decision.proven_down.items():
            ch = self.channels.get(cid)
            if ch is not None and ch.in_force == limit and at >= ch.decrease_accepted_at:
                ch.proven_down = ch.decrease_accepted_at

    def limit_of(self, ch: ChargerChannel) -> ChargerLimit | None:
        decision = self.decisions.get(ch.group.id) if ch.group else None
        return decision.limits.get(ch.id) if decision else None

    def of(self, ch: ChargerChannel, now: float) -> dict[int, float]:
        """The charger's exposure now."""
        return exposure(ch, self.limit_of(ch), now, self.ramp_time, self.failsafe_ttl, self.readings)

    def totals(self, group_id: str, now: float) -> tuple[dict[int, float], dict[str, dict[int, float]]]:
        """The group's exposure per phase, and each of its chargers'."""
        cached = self._cache.get(group_id)
        if cached is not None and now - cached[0] < CACHE_FOR:
            return cached[1], cached[2]
        each = {o.id: self.of(o, now) for o in self._members.get(group_id, ())}
        totals: dict[int, float] = {}
        for exp in each.values():
            for p, amps in exp.items():
                totals[p] = totals.get(p, 0.0) + amps
        self._cache[group_id] = (now, totals, each)
        return totals, each

    def refresh(self, ch: ChargerChannel, now: float) -> None:
        """Updates one charger's share of its group's cached sum (O(1) per change)."""
        if ch.group is None:
            return
        cached = self._cache.get(ch.group.id)
        if cached is None:
            return
        _, totals, each = cached
        old = each.get(ch.id)
        new = self.of(ch, now)
        if new == old:
            return  # the usual case: a send and its answer each refresh, and most leave the exposure as it was
        each[ch.id] = new
        if old:
            for p, amps in old.items():
                totals[p] -= amps
        for p, amps in new.items():
            totals[p] = totals.get(p, 0.0) + amps

    def forget(self, group_id: str) -> None:
        """Something in the group changed that may raise any exposure: recompute its sum when next asked."""
        self._cache.pop(group_id, None)
