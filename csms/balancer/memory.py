"""What the balancer remembers between runs: per group (:class:`BalancerMemory`) and per charger
(:class:`ChargerMemory`).

:func:`~csms.balancer.allocation.allocate` is otherwise pure; these are its one mutable input, updated in place, so
that rotation (who is paused and since when), trimming, the estimator's models and the held other load carry
from one run to the next.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .estimate import INF, DrawModel


@dataclass(slots=True)
class ChargerMemory:
    """What the balancer remembers about one charger between runs."""

    #: The last limit decided for it (what the delivery is installing).
    target: float | None = None
    #: Since when its current session has been charging (admitted) without a pause.
    running_since: float | None = None
    #: Since when its current session has been paused.
    paused_since: float | None = None
    #: The limit in force at the last run, and since when it has been.
    in_force: float | None = None
    in_force_since: float = 0.0
    #: Since when its EV has drawn clearly less than its limit.
    under_since: float | None = None
    #: The charger's draw sample last looked at (None: none), and the most it drew on a phase then.
    sample: dict[int, float] | None = None
    used: float = 0.0
    #: The cap worked out from the above, for which full cap, and until when it holds if nothing new arrives.
    cap: float = 0.0
    cap_why: str | None = None
    full: float = -1.0
    recheck_at: float = -INF
    #: Cap from trimming (EV draws less than offered), and when it was set.
    trim_cap: float | None = None
    trimmed_at: float = 0.0
    #: When a probe lifted its trim: what its EV drew and the cap it had (None: no probe awaits its answer).
    probe: tuple[float, float] | None = None
    #: Seconds the current session charged in the stretches that ended in a pause (rotation fairness).
    charged: float = 0.0
    #: What the estimator knows about its draw (:mod:`csms.balancer.estimate`).
    model: DrawModel = field(default_factory=DrawModel)
    #: When its control state last became PENDING (a change in flight since then).
    pending_since: float | None = None
    #: When its last session was seen to end while its model still followed a limit (None: not since).
    ended_at: float | None = None

    def pause(self, now: float) -> None:
        """Its session is paused from ``now`` (admission, an operator cap below min_current): the time it charged
        counts for rotation, and the trim judgement starts over when it runs again."""
        self.target = 0.0
        self.under_since = None
        if self.paused_since is None:
            if self.running_since is not None:
                self.charged += now - self.running_since
            self.paused_since, self.running_since = now, None


@dataclass
class BalancerMemory:
    """Everything :func:`allocate` carries from one run to the next for one group; updated in place.

    Create one per group and pass it to every run; it is the only mutable input of :func:`allocate`.
    """

    chargers: dict[str, ChargerMemory] = field(default_factory=dict)
    #: The other load per phase estimated from the reading taken at ``other_at``, and the estimate from the
    #: reading before it (what a phase with a moving charger holds on to).
    other: dict[int, float] | None = None
    other_at: float | None = None
    held: dict[int, float] | None = None
    #: The budget of the last run that had a fresh reading (what small changes are measured against).
    budget: dict[int, float] | None = None
    #: Per phase: (reading time, other load, measured rather than held) of the readings within the tuning's
    #: ``peak_window``, oldest first.
    recent: dict[int, deque[tuple[float, float, bool]]] = field(default_factory=dict)
    #: Per phase: (flicker amplitude, until when) carried over from the readings a step down let go.
    flicker: dict[int, tuple[float, float]] = field(default_factory=dict)
    #: Per metered circuit: the other load estimated at its meter's latest reading, as ``other``/``other_at``/
    #: ``held`` above are for the group's meter (:mod:`csms.balancer.circuits`).
    circuits: dict[str, CircuitMemory] = field(default_factory=dict)


@dataclass(slots=True)
class CircuitMemory:
    """What one metered circuit carries between runs: its other load at its latest reading, and the estimate from
    the reading before (held while a charger under it moves)."""

    other: dict[int, float] | None = None
    other_at: float | None = None
    held: dict[int, float] | None = None
