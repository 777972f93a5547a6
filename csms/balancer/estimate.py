"""What each charger draws at the moment of a mains reading, and so what the rest of the building draws.

The mains meter measures a phase's whole current: the building's other load plus the chargers. The budget
needs the other load, so the chargers' draw must be subtracted, but chargers report their draw every 10-60 s,
late, while the meter reads every second. Subtracting the last sample treats every ramp since that sample as
other load: after an increase the budget collapses, every car is paused, and the cycle repeats.

So the chargers' draw is *modelled*, and samples only teach the model:

* An EV follows a changed limit within ``ev_response`` seconds (IEC 61851-1 gives it 5 s), then draws
  ``min(limit, cap)`` on each phase it uses, where ``cap`` is its own maximum on that phase: unknown (it
  follows the limit) until a sample taken after the change says it draws clearly less, or 0 on a phase its
  on-board charger does not use. Below 6 A it draws nothing (IEC 61851).
* While a charger is *moving* (its limit changed less than ``ev_response`` before the reading, or a change is
  pending), its draw is only known to lie between what it drew before and what it will draw after. On a
  phase where a charger is moving the other load is *held*: its previous estimate is kept as long as the
  reading allows it (between ``reading - most the chargers may draw`` and ``reading - least``). A ramp
  therefore never shows up as other load, and a real step of the other load still moves the estimate as soon
  as the bounds force it to.
* When exactly one charger on a phase has just finished moving, the reading says what it drew: the reading
  minus the held other load minus everyone else. A phase that did not rise is one its EV does not use; a
  smaller rise is its cap. This learns a 1-phase EV on a 3-phase charger seconds after it starts.
* On a phase where nothing moves, the other load is the reading minus the model, at once: a step of the base
  load is seen on the next reading.

The estimate errs in one known direction: a car that draws less than its limit, before anything has taught
the model, is counted at its limit. Its unused current is then counted as its own, so the budget is consistent
with the reading (the fuse is not overloaded by the error), but that car could take it back later; the
trimming of the allocation and the next reading cut that back. Everything here is pure: time is an input.
"""

from __future__ import annotations

from dataclasses import dataclass

INF = float("inf")
#: IEC 61851: an EV offered less than this draws nothing.
IEC_MIN_CURRENT = 6.0
#: A an EV must draw below its limit for the model to take that draw as its cap: a class 1 meter's error on
#: 32 A plus the EV's own control tolerance. Not the trimming slack (2 A): a car trimmed to its draw + 2 A sits
#: exactly there, and counting it at its limit makes the other load look up to 2 A smaller per such car, the
#: budget that much too large (found by the closed-loop property test: 2.5 A over a 25 A fuse for 12 s).
CAP_TOLERANCE = 0.5

Phases3 = tuple[float, float, float]
ZERO: Phases3 = (0.0, 0.0, 0.0)
FOLLOWS: Phases3 = (INF, INF, INF)


@dataclass(slots=True)
class DrawModel:
    """What the balancer knows about one charger's draw; one per charger, kept between runs."""

    #: The limit its EV follows now (A per phase); None before anything is known.
    limit: float | None = None
    #: When it started to follow ``limit`` (-inf: long before any reading we have).
    since: float = -INF
    #: What it may have drawn per building phase when ``since`` began: the most, and the least (None: the same;
    #: less when the change came while it was still following the limit before).
    before: Phases3 = ZERO
    before_least: Phases3 | None = None
    #: Readings taken before ``since`` but before ``earlier_until`` caught it following the limit before: its
    #: draw then lay within ``earlier`` (least, most).
    earlier: tuple[Phases3, Phases3] | None = None
    earlier_until: float = -INF
    #: Per building phase, the most its EV takes (INF: it follows the limit; 0: a phase it does not use).
    cap: Phases3 = FOLLOWS
    #: Building phases it may draw on (its wired phases, or those its EV is known to use).
    phases: tuple[int, ...] = ()
    #: The last sample the model has looked at (recognised by identity).
    sample: dict[int, float] | None = None
    #: Whether the reading that ended its last move has already been used to learn its cap.
    learned_from_mains: bool = True
    #: The phases its EV uses, when a reading showed that some wired phase did not rise (None: not learned).
    in_use: tuple[int, ...] | None = None
    #: When a sample showed it already drawing what it draws at its present limit (inf: none has yet).
    reached: float = INF

    def expected(self, limit: float | None = None) -> Phases3:
        """Its draw per building phase once it follows ``limit`` (default: its present limit)."""
        lim = self.limit if limit is None else limit
        if lim is None or lim < IEC_MIN_CURRENT - 1e-9:
            return ZERO
        out = [0.0, 0.0, 0.0]
        for p in self.phases:
            c = self.cap[p - 1]
            out[p - 1] = lim if lim < c else c
        return out[0], out[1], out[2]

    def bounds(self, at: float, window: float, pending: float | None = None) -> tuple[Phases3, Phases3, bool]:
        """(least, most, moving): what it may be drawing per building phase at time ``at``.

        ``pending``: a limit sent and not yet answered; the charger may switch to it at any moment.
        """
        if pending is not None:
            # Wherever it is along its present move, it may be heading for the pending limit already.
            least, most, _ = self.bounds(at, window)
            other = self.expected(pending)
            return _lo(least, other), _hi(most, other), True
        now = self.expected()
        most = self.before
        least = most if self.before_least is None else self.before_least
        if at < self.since:
            if at < self.earlier_until and self.earlier is not None:
                return self.earlier[0], self.earlier[1], True
            return least, most, least != most
        if at < self.since + window and at < self.reached:
            return _lo(least, now), _hi(most, now), True
        return now, now, False

    def follow(self, limit: float | None, at: float, window: float = 0.0) -> None:
        """Its limit in force changed at ``at``.

        A change that comes while it still follows the limit before (within ``window`` of that one) does not
        make the model forget that move: a reading taken before ``at`` may have caught it anywhere along it,
        and the new move starts from wherever it had got to. Taking the old limit as reached there instead
        counts a car still ramping up at its full old limit (the other load then looks that much smaller,
        and the budget too large) and a car still ramping down at its lower limit (the other load looks
        larger, the budget falls, and every further decrease on the same reading lowers it again).
        """
        if limit == self.limit:
            return
        most = self.before
        least = most if self.before_least is None else self.before_least
        old = self.expected()
        self.earlier, self.earlier_until = (_lo(least, old), _hi(most, old)), self.since + window
        lo, hi, _ = self.bounds(at, window)
        self.before, self.before_least = hi, (None if lo == hi else lo)
        self.limit, self.since, self.reached = limit, at, INF
        self.learned_from_mains = False

    def learn_sample(self, draw: dict[int, float], taken_at: float, window: float, slack: float) -> None:
        """A sample taken once the EV had followed its present limit says how much of it the EV takes.

        One taken sooner, during the move, that shows it already drawing what it will draw (within
        ``slack`` on every phase it uses) ends the move there: most EVs follow in a second or two, and a
        charger that reports right after a change (a triggered sample) saves the rest of ``ev_response``,
        during which the other load could only be held, not measured.
        """
        lim = self.limit
        if lim is None:
            return
        if taken_at >= self.since:
            self._raise_caps(draw, lim, slack)
        if taken_at < self.since + window:
            if taken_at >= self.since and self._arrived(draw, slack):
                self.reached = min(self.reached, taken_at)
            return  # before its EV could follow the present limit: says nothing about its cap
        if lim < IEC_MIN_CURRENT:
            return
        if all(a < 1.0 for a in draw.values()):
            return  # not drawing at all (not started yet, suspended): says nothing about what it takes
        cap = list(self.cap)
        for p, amps in draw.items():
            if 1 <= p <= 3:
                cap[p - 1] = amps if amps < lim - slack else INF
        self.cap = (cap[0], cap[1], cap[2])
        if all(p in draw for p in self.phases):
            self.in_use = self.phases_in_use(self.phases)

    def _raise_caps(self, draw: dict[int, float], lim: float, slack: float) -> None:
        """A sample under the present limit that shows more than a learned cap (at any time: a car cannot draw
        above its own cap while it moves either) proves that cap wrong. A cap the mains taught while the held other
        load was a little high (B-mv60-ev5: 17.2 A for a car drawing its 18.5 A limit) otherwise stayed until the
        next sample taken after a full ``ev_response`` of a limit, which a charger reporting every 60 s and seeing
        its limit move every 20 s never sends; meanwhile its phase's other load looked 1 A larger."""
        cap = list(self.cap)
        for p, amps in draw.items():
            if 1 <= p <= 3 and 1.0 <= cap[p - 1] < amps - slack:
                cap[p - 1] = INF if amps >= lim - slack else amps
        self.cap = (cap[0], cap[1], cap[2])

    def narrow(self, phases: tuple[int, ...]) -> None:
        """Its EV draws on ``phases`` only (learned), or at most its cap on each: what the model kept of its
        past draw (before and during its last moves) is bounded the same way, or a draw it never had on a
        phase would stay in the bounds of readings until the move ends."""
        self.phases = phases
        top = tuple(self.cap[i] if i + 1 in phases else 0.0 for i in range(3))
        self.before = _lo(self.before, top)  # type: ignore[arg-type]
        if self.before_least is not None:
            self.before_least = _lo(self.before_least, top)  # type: ignore[arg-type]
        if self.earlier is not None:
            self.earlier = (_lo(self.earlier[0], top), _lo(self.earlier[1], top))  # type: ignore[arg-type]

    def _arrived(self, draw: dict[int, float], slack: float) -> bool:
        expected = self.expected()
        for p in self.phases:
            amps = draw.get(p)
            if amps is None or abs(amps - expected[p - 1]) > slack:
                return False
        return bool(self.phases)

    def learn_from_reading(self, phase: int, drawn: float, slack: float) -> None:
        """The mains reading showed it drawing ``drawn`` on ``phase`` once it had followed its limit.

        The reading also moves with the other load, which the held estimate may no longer match: in the demo
        the base load stepped down 11 A as a car finished its move, and the car was learned as drawing
        nothing on the one phase it used. A residual below nothing, or nothing where the car's own last
        sample showed it drawing, is the other load changing, not the car.
        """
        lim = self.limit
        if lim is None or lim < IEC_MIN_CURRENT:
            return
        if drawn < -slack:
            return
        if drawn < 1.0 and self.sample and self.sample.get(phase, 0.0) >= 1.0:
            return
        cap = list(self.cap)
        cap[phase - 1] = max(0.0, drawn) if drawn < lim - slack else INF
        self.cap = (cap[0], cap[1], cap[2])

    def phases_in_use(self, wired: tuple[int, ...]) -> tuple[int, ...] | None:
        """The wired phases its EV uses, when the model has learned that some carry (next to) nothing."""
        used = tuple(p for p in wired if self.cap[p - 1] >= 1.0)
        return used if used and len(used) < len(wired) else None

    def reset(self) -> None:
        """No session (any more): nothing is known about the next EV."""
        self.limit, self.since, self.cap, self.sample = None, -INF, FOLLOWS, None
        self.before, self.before_least, self.earlier, self.earlier_until = ZERO, None, None, -INF
        self.learned_from_mains, self.in_use, self.reached = True, None, INF


def _lo(a: Phases3, b: Phases3) -> Phases3:
    return (a[0] if a[0] < b[0] else b[0], a[1] if a[1] < b[1] else b[1], a[2] if a[2] < b[2] else b[2])


def _hi(a: Phases3, b: Phases3) -> Phases3:
    return (a[0] if a[0] > b[0] else b[0], a[1] if a[1] > b[1] else b[1], a[2] if a[2] > b[2] else b[2])


def other_load(measured: float, least: float, most: float, moving: bool, held: float | None) -> float:
    """The other load on one phase: the reading minus the chargers, or, while one of them moves, the held
    estimate as far as the reading allows (see the module docstring)."""
    if not moving or held is None:
        return measured - least  # with nothing held, err towards more other load
    low, high = measured - most, measured - least
    return low if held < low else high if held > high else held
