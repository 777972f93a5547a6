"""What the group's chargers draw at the reading's time, summed per building phase as one run works it out.

:mod:`csms.balancer.estimate` models one charger's draw; :class:`DrawSums` adds every charger's bounds up (the
least and the most it may draw, whether it is moving) in the same pass that classifies the chargers
(:func:`csms.balancer.classify.classify`), and remembers what :mod:`csms.balancer.other_load` and
:mod:`csms.balancer.proof` need of it: the sessions the model follows, and those whose move just ended.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .estimate import CAP_TOLERANCE, INF, Phases3
from .memory import ChargerMemory
from .model import ChargerInput, ChargerSpec, ControlState, Tuning

_CONTROLLED = ControlState.CONTROLLED
_PENDING = ControlState.PENDING


def own_per_phase(draw: dict[int, float], spec_max: float, wired: tuple[int, ...],
                  limit: float | None) -> tuple[float, float, float]:
    """A charger's reported draw on building phases 1, 2, 3, bounded by what it can physically draw: nothing
    on a phase it is not wired to, at most its ``max_current``, and at most ``limit`` (a controlled charger's
    limit in force: an older sample may predate a decrease). A charger that reports 16,000 A (mA sent as A)
    is therefore counted at its ``max_current``, not subtracted from the reading as if it were real."""
    top = spec_max if limit is None or limit > spec_max else limit
    out = [0.0, 0.0, 0.0]
    for p, a in draw.items():
        if p in wired and a > 0:
            out[p - 1] = a if a < top else top
    return out[0], out[1], out[2]


def reported(sample: dict[int, float], spec: ChargerSpec) -> dict[int, float]:
    """The phases a sample reports, each bounded by what the charger can draw (see :func:`own_per_phase`)."""
    return {p: min(max(a, 0.0), spec.max_current) for p, a in sample.items() if p in spec.phases_wired}


def pending_target(ch: ChargerInput, mem: ChargerMemory) -> bool:
    """Whether a limit is in flight to ``ch`` that it may switch to at any moment."""
    return ch.control is _PENDING and mem.target is not None


@dataclass(slots=True, eq=False)
class DrawSums:
    """The chargers' draw at the reading, per building phase 1..3, as one run adds it up."""

    now: float
    tuning: Tuning
    #: At the reading's time: the least and the most the chargers may draw per building phase 1..3, and
    #: how many of them are moving on each (see :mod:`csms.balancer.estimate`).
    least: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    most: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    moving: list[int] = field(default_factory=lambda: [0, 0, 0])
    #: Per building phase, how much less the chargers draw than the model believed before this run
    #: learned it (the held other load is raised by that much).
    relearned: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    #: Chargers whose move ended since the previous reading: what the new reading can teach.
    settled: list[tuple[ChargerMemory, Phases3]] = field(default_factory=list)
    #: Sessions the model follows at the reading (under a limit of ours, one in flight, or their fallback),
    #: with the least and the most they may draw then.
    steered: list[tuple[ChargerInput, Phases3, Phases3]] = field(default_factory=list)

    def estimate(self, ch: ChargerInput, mem: ChargerMemory, at: float) -> None:
        """Adds what ``ch`` may be drawing at the reading's time ``at`` to the run's sums, and teaches its
        model what is new (a changed limit, a sample)."""
        spec, model, tuning = ch.spec, mem.model, self.tuning
        window = tuning.ev_response
        sample = ch.draw or None
        recent = (sample is not None and ch.draw_at is not None
                  and self.now - ch.draw_at <= tuning.draw_max_age)
        control = ch.control
        steered = ch.connected and ch.session_active and (control is _CONTROLLED or control is _PENDING)
        if not steered:
            if (model.limit is not None and mem.ended_at is None and ch.connected and not ch.session_active
                    and control is _CONTROLLED):
                # Its session just ended. A reading taken before that saw its EV drawing (the demo: a reading
                # a second old, minus the chargers without this one, made the other load 7 A too large, and
                # the peak window held that for 10 s), and one taken since may not yet show it stopped: it is
                # counted along a move to 0 from now, as a lowered limit would be.
                mem.ended_at = self.now
                model.follow(0.0, self.now, window)
            if mem.ended_at is not None and at < mem.ended_at + window:
                least, most, moving = model.bounds(at, window)
                self.add(least, most, moving)
                return
            mem.ended_at = None
            # Not following a limit we know: counted at its reported draw (bounded by what it can draw).
            model.reset()
            if recent:
                limit = ch.limit_in_force if control is _CONTROLLED else None
                own = own_per_phase(sample, spec.max_current, spec.phases_wired, limit)  # type: ignore[arg-type]
                self.add(own, own, False)
            return
        if mem.ended_at is not None:  # a new session within ev_response of the last one's end
            mem.ended_at = None
            model.reset()
        limit = ch.limit_in_force if ch.limit_in_force is not None else spec.offline_current
        if limit > spec.max_current:
            limit = spec.max_current
        phases = ch.phases_in_use or spec.phases_wired
        since = ch.limit_since if ch.limit_since is not None else self.now
        if model.limit is None:
            model.phases = phases
            # First seen in this session. A recent sample that shows it drawing says it has been following
            # its limit; otherwise its EV starts (or started at some unknown time) to follow it now.
            model.limit, model.before, model.learned_from_mains = limit, (0.0, 0.0, 0.0), True
            model.reached = INF
            model.before_least, model.earlier, model.earlier_until = None, None, -INF
            if control is _CONTROLLED and recent and any(a >= 1.0 for a in sample.values()):  # type: ignore[union-attr]
                model.since = -INF
                model.cap = (INF, INF, INF)
                model.learn_sample(reported(sample, spec), -INF, 0.0, CAP_TOLERANCE)  # type: ignore[arg-type]
                model.sample = sample
            else:
                model.since = min(since, at)
        elif control is _CONTROLLED:
            model.follow(limit, since, window)
        new_sample = sample is not model.sample
        if new_sample or model.phases != phases:  # otherwise nothing the model believes can have changed
            believed = model.expected()
            model.phases = phases
            if new_sample:
                model.sample = sample
                # Only under a limit of ours: a charger pending on its offline fallback (often one phase) shows
                # a 3-phase car on one phase, which says nothing about what it takes on all three.
                if sample is not None and ch.draw_at is not None and control is _CONTROLLED:
                    model.learn_sample(reported(sample, spec), ch.draw_at, window, CAP_TOLERANCE)
            learned = model.expected()
            if learned != believed:
                model.narrow(model.phases)
                # It draws less than the model believed (a phase its EV does not use, a cap): the held other
                # load was the reading minus that belief, too small by the difference (and the budget too large).
                for i in range(3):
                    self.relearned[i] += believed[i] - learned[i]
        target = mem.target if pending_target(ch, mem) else None
        least, most, moving = model.bounds(at, window, target)
        if (not moving and not model.learned_from_mains and model.since > -INF
                and at >= model.since + window):
            self.settled.append((mem, least))
        self.steered.append((ch, least, most))
        self.add(least, most, moving)

    def add(self, least: tuple[float, float, float], most: tuple[float, float, float], moving: bool) -> None:
        lo, hi, mv = self.least, self.most, self.moving
        for i in range(3):
            lo[i] += least[i]
            hi[i] += most[i]
            if moving and most[i] > least[i]:
                mv[i] += 1
