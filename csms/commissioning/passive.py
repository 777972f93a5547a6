"""The passive commissioning check: the same wiring questions as the active check, learned from normal operation.

Nobody releases chargers one at a time here; cars start, stop and follow their limits on their own. The
:class:`WiringCorrelator` keeps every charger's own samples (MeterValues, in the *charger's* phase numbering, as
the active check reads them) and the group's mains readings, and takes only **clear events** as evidence:

* one charger's own draw steps by at least :data:`STEP_A` on a phase between two of its samples (a session's
  start and end count as samples of 0 A: a car draws nothing before its transaction starts or after it ends),
  all of its phases the same way;
* every other charger of the group holds steady (within :data:`STEADY_A`) over the same interval and the mains
  windows around it; their next sample is waited for (:data:`PENDING_MAX`), a charger without a session and
  without draw is steady;
* the mains are read as median of the readings just before the first sample and just after the second
  (:data:`BEFORE`, :data:`AFTER`); the event is judged only once a reading taken after that window has arrived,
  so a meter that delivers late is waited for (meter latency);
* a mains step that moved but not by about the charger's own step (:data:`RATIO`) is another load switching
  meanwhile: no evidence either way.

A step down is judged as the mirror of a step up, so each event is a :class:`StepMeasure` exactly like a released
charger's, and :func:`csms.commissioning.inference.infer` judges them with the active check's rules, findings
and fixes (one copy of every rule). The correlator only adds how much evidence is enough: a finding is
concluded when at least :data:`MIN_EVENTS` events bear it out and no event kept contradicts the explanation
(an event no wiring explains holds every conclusion back until it ages out of the window). Time is an input.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .inference import infer, power_fits, significant, step_fits
from .measure import NOMINAL_VOLTS
from .model import Finding, MainsSample, Phases, SiteWiring, StepMeasure, Verdict

#: A charger's draw changing by at least this (A) on a phase between two samples is a step.
STEP_A = 4.0
#: The other chargers hold steady when none of their phases moves more than this (A).
STEADY_A = 1.0
#: Two samples further apart than this (s) say too little about when the step happened.
MAX_GAP = 120.0
#: Seconds of mains readings before the first sample and after the second that are compared.
BEFORE = 3.0
AFTER = 3.0
#: Seconds after the second sample an event may wait for the mains and the other chargers' next samples.
PENDING_MAX = 120.0
#: The mains step must be this share of the charger's own step (its largest phase) to be the same event.
RATIO = (0.5, 1.6)
#: Events that must bear a finding out before it is concluded.
MIN_EVENTS = 3
#: Events kept per charger (the newest): old evidence ages out, so a fixed fault clears.
PER_CHARGER = 6
#: Finding kinds the passive watch concludes (the others need a check's controlled steps).
PASSIVE_KINDS = frozenset({"reversed_clamp", "meter_phases_swapped", "phase_rotation", "chargers_not_measured",
                           "charger_not_measured", "chargers_measured"})
KEEP_S = MAX_GAP + PENDING_MAX + BEFORE + AFTER + 60.0


def _zero(p: float | None) -> float:
    return 0.0 if p is None else p


@dataclass(frozen=True)
class ChargerSample:
    at: float
    current: tuple[float, float, float]


@dataclass
class _Track:
    """One charger's recent samples and whether a session of it runs."""

    samples: deque[ChargerSample] = field(default_factory=deque)
    active: bool = False


@dataclass(frozen=True)
class _Candidate:
    charger_id: str
    t0: float
    t1: float
    sign: int
    pattern: tuple[float, float, float]


@dataclass(frozen=True)
class PassiveFinding:
    """A concluded finding and how many events bear it out."""

    finding: Finding
    events: int

    @property
    def key(self) -> tuple[str, str]:
        return (self.finding.kind, self.finding.subject)

    def as_json(self) -> dict[str, Any]:
        return {**self.finding.as_json(), "events": self.events}


def _stamp(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _median(values: Sequence[float | None]) -> float | None:
    real = [v for v in values if v is not None]
    return statistics.median(real) if real else None


class WiringCorrelator:
    """One group's evidence: feed it every mains reading (:meth:`mains`), every charger sample
    (:meth:`charger_sample`) and session start and end (:meth:`session`), then ask :meth:`conclude`."""

    def __init__(self) -> None:
        self._mains: deque[MainsSample] = deque()
        self._tracks: dict[str, _Track] = {}
        self._pending: list[_Candidate] = []
        self._events: dict[str, deque[StepMeasure]] = {}

    # -- input ----------------------------------------------------------------------------------------

    def charger_sample(self, charger_id: str, at: float, current: Phases, paired: bool = True) -> None:
        """A charger's own sample (its phases L1..L3). ``paired`` False: it says nothing about when its draw
        changed since the one before (it was delivered late, in a batch), so no step is read from the two."""
        track = self._tracks.setdefault(charger_id, _Track())
        self._add(charger_id, track, ChargerSample(at, (_zero(current[0]), _zero(current[1]), _zero(current[2]))),
                  paired)

    def session(self, charger_id: str, at: float, active: bool) -> None:
        """A session started or ended: its car draws nothing then (a sample of 0 A)."""
        track = self._tracks.setdefault(charger_id, _Track())
        track.active = active
        self._add(charger_id, track, ChargerSample(at, (0.0, 0.0, 0.0)))

    def mains(self, sample: MainsSample) -> bool:
        """A mains reading; True when it completed an event (the evidence changed)."""
        if self._mains and sample.at < self._mains[-1].at:
            return False  # a reading older than the newest: the windows are read in time order
        self._mains.append(sample)
        while self._mains and self._mains[0].at < sample.at - KEEP_S:
            self._mains.popleft()
        return self._resolve(sample.at)

    def events(self) -> list[StepMeasure]:
        return [m for q in self._events.values() for m in q]

    # -- the judgement --------------------------------------------------------------------------------

    def conclude(self, wiring: SiteWiring) -> list[PassiveFinding]:
        """The findings the kept events prove against ``wiring`` (empty while any event contradicts)."""
        ids = {c.id for c in wiring.chargers}
        events = [m for m in self.events() if m.charger_id in ids]
        if not events:
            return []
        verdict = infer(wiring, events)
        if any(f.kind == "unexplained" for f in verdict.findings):
            return []
        out = []
        for f in verdict.findings:
            if f.kind in PASSIVE_KINDS:
                n = support(f, wiring, events, verdict)
                if n >= MIN_EVENTS:
                    out.append(PassiveFinding(f, n))
        return out

    # -- inside ---------------------------------------------------------------------------------------

    def _add(self, charger_id: str, track: _Track, s: ChargerSample, paired: bool = True) -> None:
        previous = track.samples[-1] if track.samples else None
        if previous is not None and s.at < previous.at:
            return
        track.samples.append(s)
        while len(track.samples) > 2 and track.samples[0].at < s.at - KEEP_S:
            track.samples.popleft()
        if previous is None or not paired or s.at - previous.at > MAX_GAP:
            return
        diff = [b - a for a, b in zip(previous.current, s.current)]
        top = max(abs(d) for d in diff)
        if top < STEP_A:
            return
        moved = [d for d in diff if abs(d) > STEADY_A]
        if not (all(d > 0 for d in moved) or all(d < 0 for d in moved)):
            return  # one phase up, another down: a phase switch, not a step the mains can be matched with
        sign = 1 if moved[0] > 0 else -1
        pattern = (max(0.0, sign * diff[0]), max(0.0, sign * diff[1]), max(0.0, sign * diff[2]))
        # Candidates the mains never completed (a meter offline) go once they are past waiting for.
        self._pending = [c for c in self._pending if s.at - c.t1 <= PENDING_MAX + AFTER]
        self._pending.append(_Candidate(charger_id, previous.at, s.at, sign, pattern))

    def _resolve(self, now: float) -> bool:
        changed = False
        keep = []
        for c in self._pending:
            if now < c.t1 + AFTER:
                keep.append(c)
                continue
            steady = [self._steady(cid, t, c.t0 - BEFORE, c.t1 + AFTER)
                      for cid, t in self._tracks.items() if cid != c.charger_id]
            if any(s is False for s in steady):
                continue
            if any(s is None for s in steady):
                if now - c.t1 <= PENDING_MAX:
                    keep.append(c)
                continue
            m = self._measure(c)
            if m is not None:
                q = self._events.setdefault(c.charger_id, deque(maxlen=PER_CHARGER))
                q.append(m)
                changed = True
        self._pending = keep
        return changed

    @staticmethod
    def _steady(charger_id: str, track: _Track, since: float, until: float) -> bool | None:
        """Whether the charger held its draw over [since, until]; None: not known until its next sample."""
        before = [s for s in track.samples if s.at <= since][-1:]
        inside = [s for s in track.samples if since < s.at < until]
        after = next((s for s in track.samples if s.at >= until), None)
        points = before + inside + ([after] if after is not None else [])
        if after is None and not track.active:
            return all(max(s.current) <= STEADY_A for s in points)
        if after is None:
            return None
        for i in range(3):
            values = [s.current[i] for s in points]
            if max(values) - min(values) > STEADY_A:
                return False
        return True

    def _measure(self, c: _Candidate) -> StepMeasure | None:
        before = [s for s in self._mains if c.t0 - BEFORE <= s.at <= c.t0]
        after = [s for s in self._mains if c.t1 <= s.at <= c.t1 + AFTER]
        if not before or not after:
            return None
        delta: list[float | None] = []
        for i in range(3):
            b, a = _median([s.current[i] for s in before]), _median([s.current[i] for s in after])
            delta.append(None if a is None or b is None else c.sign * (a - b))
        p0, p1 = _median([s.power for s in before]), _median([s.power for s in after])
        volts = _median([v for s in after for v in s.voltage])
        mains_top = max((abs(d) for d in delta if d is not None), default=0.0)
        own_top = max(c.pattern)
        if significant(tuple(delta)) and not RATIO[0] <= mains_top / own_top <= RATIO[1]:
            return None  # the mains moved, but not by this car's step: another load switched meanwhile
        step = "+".join(f"{a:.1f}" for a in c.pattern if a > STEADY_A)
        what = (f"started drawing {step} A ({_stamp(c.t0)} to {_stamp(c.t1)})" if c.sign > 0 else
                f"stopped drawing {step} A ({_stamp(c.t0)} to {_stamp(c.t1)}; changes shown as for a start)")
        return StepMeasure(
            c.charger_id, (delta[0], delta[1], delta[2]),
            None if p0 is None or p1 is None else c.sign * (p1 - p0),
            volts if volts is not None and volts > 50 else NOMINAL_VOLTS, None, c.pattern, len(before), len(after),
            what)


def support(f: Finding, wiring: SiteWiring, events: Sequence[StepMeasure], verdict: Verdict) -> int:
    """How many of ``events`` bear finding ``f`` out: each one the config's wiring does not explain and the
    finding does (a reversed clamp: a fall on its phase; a rotation: that charger's step on other phases...)."""
    measured = tuple(p for p in wiring.meter_phases if p in (1, 2, 3))
    seen = [m for m in events if significant(m.delta)]
    unseen = [m for m in events if not significant(m.delta)]
    identity = {p: p for p in measured}
    signs = verdict.signs or {p: 1 for p in (1, 2, 3)}
    perm = verdict.meter_map or identity

    def fits_config(m: StepMeasure, meter: dict[int, int]) -> bool:
        ch = wiring.charger(m.charger_id)
        return step_fits(m, ch, ch.rotation, meter, signs, measured)

    if f.kind == "reversed_clamp":
        phase = int(f.subject.rsplit("L", 1)[1])
        return sum(1 for m in seen if significant(m.delta).get(phase, 0.0) < 0)
    if f.kind == "meter_phases_swapped":
        return sum(1 for m in seen if not fits_config(m, identity) or not power_fits(m, identity, measured))
    if f.kind == "phase_rotation":
        return sum(1 for m in seen if m.charger_id == f.subject and not fits_config(m, perm))
    if f.kind == "chargers_not_measured":
        return len(unseen)
    if f.kind == "charger_not_measured":
        return sum(1 for m in unseen if m.charger_id == f.subject)
    if f.kind == "chargers_measured":
        return len(seen)
    return 0
