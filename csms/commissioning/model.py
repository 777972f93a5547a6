"""What the commissioning check reasons about: the wiring the config claims, what the mains meter saw while one
charger at a time was released, and the findings that come out, each with its evidence and its fix.

Everything here is plain data (time is an input, as in the balancer): the orchestrator in
:mod:`csms.runtime.commissioning` collects it from a running central system, :mod:`.inference` judges it, and
tests build it by hand. Phases are numbered 1..3. *Meter phases* are the meter's own terminals L1..L3 as its
reading labels them; *building phases* are R, S, T (1, 2, 3) as the config's ``phase_rotation`` names them;
*charger phases* are the charger's own L1..L3 as its MeterValues label them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

Phases = tuple[float | None, float | None, float | None]
ROTATIONS = ("RST", "RTS", "SRT", "STR", "TRS", "TSR")


@dataclass(frozen=True)
class MainsSample:
    """One mains reading: A per meter phase (+ import), total active power in W when the meter gives it."""

    at: float
    current: Phases
    power: float | None = None
    voltage: Phases = (None, None, None)
    #: When the central system got it (the meter's own delay is ``received_at - at``); None: same as ``at``.
    received_at: float | None = None


@dataclass(frozen=True)
class ChargerWiring:
    """What the config (and the charger itself) says about one charger."""

    id: str
    #: Its position in ``[[chargers]]``: the fix names ``chargers.<index>.phase_rotation``.
    index: int
    phases: int = 3
    rotation: str = "RST"
    #: What the charger reports (1.6 ``ConnectorPhaseRotation``, 2.0.1 ``PhaseRotation``); None: not reported.
    reported_rotation: str | None = None


@dataclass(frozen=True)
class SiteWiring:
    """The group under test as the config describes it."""

    group_id: str
    #: Its position in ``[[load_balancers]]`` (for the fix ``load_balancers.<index>.chargers_in_measurement``).
    group_index: int
    meter: str
    chargers_in_measurement: bool
    chargers: tuple[ChargerWiring, ...]
    #: Meter phases the group uses (``[[meters]] phases``); a one-phase site is (1,).
    meter_phases: tuple[int, ...] = (1, 2, 3)
    #: Seconds a release may take to show on the mains before the meter counts as slow (EV response + readings).
    expected_response: float = 8.0

    def charger(self, charger_id: str) -> ChargerWiring:
        return next(c for c in self.chargers if c.id == charger_id)


@dataclass(frozen=True)
class Step:
    """One charger released alone (every other charger of the group held at 0 A) from ``released_at`` until
    ``held_at``, allowed ``allowed`` A per phase."""

    charger_id: str
    released_at: float
    held_at: float
    allowed: float
    #: What the charger itself reported drawing while released, per charger phase L1..L3 (its MeterValues);
    #: None: no sample taken while it was released.
    drawn: Phases | None = None


@dataclass(frozen=True)
class Untested:
    """A charger the check could not test, and why (no car, not connected, no room under the fuse...)."""

    charger_id: str
    reason: str


@dataclass(frozen=True)
class StepMeasure:
    """What one step did on the mains: the change per meter phase (plateau minus baseline)."""

    charger_id: str
    delta: Phases
    #: Change of the total active power (W), when the meter gives power.
    delta_power: float | None
    #: Mean phase voltage during the step (V), 230 when the meter gives none.
    volts: float
    #: Seconds from the release until the biggest change was half done on the mains; None: no change seen.
    latency: float | None
    drawn: Phases | None
    baseline_readings: int
    plateau_readings: int
    #: What the charger did, as the evidence says it ("released" in a check; the passive watch says when
    #: and how much its own draw stepped).
    what: str = "released"


@dataclass(frozen=True)
class Finding:
    """One thing the wiring contradicts in the config. ``config`` is the exact change that makes the config
    match the site (path -> new value), or empty when only a change on site fixes it (``fix`` says which)."""

    kind: str
    subject: str
    message: str
    evidence: tuple[str, ...]
    fix: str
    config: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "evidence": list(self.evidence)}


@dataclass(frozen=True)
class ChargerResult:
    """Per charger: tested or not (and why), what rose on the mains and what that says about its rotation."""

    id: str
    tested: bool
    reason: str = ""
    delta: Phases | None = None
    drawn: Phases | None = None
    latency: float | None = None
    #: Meter phases that rose (or fell) when it was released.
    phases_seen: tuple[int, ...] = ()
    configured_rotation: str = ""
    reported_rotation: str | None = None
    #: The rotation the mains response shows, with '?' for letters a step could not observe (a balanced
    #: 3-phase draw shows none); None: not tested.
    observed_rotation: str | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Verdict:
    """Everything :func:`csms.commissioning.inference.infer` concludes."""

    findings: tuple[Finding, ...]
    chargers: tuple[ChargerResult, ...]
    #: Median and largest release-to-mains latency over the steps seen (s), and the meter's own delivery delay.
    latency_median: float | None = None
    latency_max: float | None = None
    reading_delay: float | None = None
    #: The explanation the findings come from: +1 / -1 per meter phase (-1: the clamp is reversed), and the
    #: building phase each meter phase's clamp carries. The passive watch weighs its evidence against them.
    signs: dict[int, int] = field(default_factory=dict)
    meter_map: dict[int, int] = field(default_factory=dict)

    @property
    def untested(self) -> tuple[ChargerResult, ...]:
        return tuple(c for c in self.chargers if not c.tested)

    @property
    def ok(self) -> bool:
        """Everything matches: no finding and every charger tested."""
        return not self.findings and not self.untested
