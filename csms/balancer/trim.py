"""Trimming: a session whose EV draws clearly less than it is offered is capped at its draw plus headroom, so
that the rest goes to others, and offered its full share again every ``probe_every`` seconds to see whether it
wants more (:class:`~csms.balancer.model.Tuning` has the knobs).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .estimate import INF
from .grid import ceil_half, floor_step
from .memory import ChargerMemory
from .model import ChargerInput, Tuning


@dataclass(slots=True, eq=False)
class Trimming:
    """Works out each session's cap for one run, judging every new sample of its own draw."""

    now: float
    tuning: Tuning
    #: The group's ``min_current`` on the 0.1 A grid: no cap is lower.
    min: float
    #: The reason of each trimmed cap, written once per run and shared by the sessions with that cap.
    reasons: dict[tuple, str] = field(default_factory=dict)

    def cap(self, ch: ChargerInput, phases: tuple[int, ...], mem: ChargerMemory,
            full: float) -> tuple[float, str | None]:
        """The most a session may get: max_current, or less while its EV draws clearly less (trimming)."""
        now = self.now
        tuning = self.tuning
        in_force, at = ch.limit_in_force, ch.draw_at
        if in_force != mem.in_force:
            # A lower limit still above its draw leaves "it draws clearly less" true: only a rise, or a limit
            # it would now fill, starts the judgement over (a 60 s charger's car was trimmed 60 s late for
            # every small decrease the others' arrivals caused).
            old = mem.in_force
            if (in_force is None or old is None or in_force > old
                    or in_force < mem.used + tuning.trim_slack):
                mem.under_since = None
            mem.in_force, mem.in_force_since = in_force, now
        if (ch.draw or None) is not mem.sample:
            mem.sample = ch.draw or None
            self._judge(ch, phases, mem)
        if mem.trim_cap is None:
            if (mem.under_since is not None and now - mem.under_since >= tuning.trim_after
                    and at is not None and now - at <= tuning.draw_max_age):
                mem.trim_cap = max(self.min, ceil_half(mem.used + tuning.trim_headroom))
                mem.trimmed_at = now
        elif now - mem.trimmed_at >= tuning.probe_every:
            mem.probe = (mem.used, mem.trim_cap)
            mem.trim_cap = mem.under_since = None  # probe: offer its full share again
        trim = mem.trim_cap
        if trim is None:
            mem.recheck_at = INF if mem.under_since is None else mem.under_since + tuning.trim_after
        else:
            mem.recheck_at = mem.trimmed_at + tuning.probe_every
        mem.full = full
        if trim is None or trim >= full:
            mem.cap, mem.cap_why = full, None
            return full, None
        why = self.reasons.get(("trim", trim))
        if why is None:
            why = self.reasons[("trim", trim)] = (
                f"its EV draws clearly less than offered: capped at {trim:.1f} A (its draw + "
                f"{tuning.trim_headroom:.1f} A headroom; offered more every {tuning.probe_every:.0f} s)")
        mem.cap, mem.cap_why = floor_step(trim), why
        return mem.cap, why

    def _judge(self, ch: ChargerInput, phases: tuple[int, ...], mem: ChargerMemory) -> None:
        """Looks at a new sample of the charger's own draw: does its EV take what it is offered?"""
        tuning = self.tuning
        draw, at, in_force = ch.draw, ch.draw_at, ch.limit_in_force
        if not draw or at is None or at < mem.in_force_since or self.now - at > tuning.draw_max_age:
            return  # nothing, or taken before the limit in force now: says nothing about it
        used = 0.0
        for p in phases or draw:
            a = draw.get(p, 0.0)
            if a > used:
                used = a
        mem.used = used
        if mem.trim_cap is not None:
            if used >= mem.trim_cap - tuning.trim_headroom / 2:
                mem.trim_cap = mem.under_since = None  # it wants more again
            else:
                mem.trim_cap = min(mem.trim_cap, max(self.min, ceil_half(used + tuning.trim_headroom)))
        elif in_force is not None and in_force >= self.min and used < in_force - tuning.trim_slack:
            # Only once its EV could follow the limit: a 60 s charger's first sample, taken a second after an
            # increase while the car still ramped, once trimmed a car that wanted its full share.
            if at >= mem.in_force_since + tuning.ev_response:
                probe = mem.probe
                if probe is not None and in_force > probe[1]:
                    mem.probe = None
                    if used <= probe[0] + tuning.trim_slack / 2:
                        # The probe offered it more and it took no more: its cap is known, no need to wait.
                        mem.trim_cap = max(self.min, ceil_half(used + tuning.trim_headroom))
                        mem.trimmed_at = self.now
                        return
                if mem.under_since is None:
                    mem.under_since = at
        else:
            mem.under_since = mem.probe = None
