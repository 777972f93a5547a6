"""The findings in words, each with its evidence and the exact fix, and the report an installer reads.

Kept apart from :mod:`.inference` so that what to conclude and how to say it change separately. A fix names
the config path exactly as ``csms check-config`` prints it (``chargers.2.phase_rotation``); a fault that no
setting can express (a clamp the wrong way round) says what to change on site.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from .model import ChargerWiring, Finding, Phases, SiteWiring, StepMeasure, Verdict


def _amps(delta: Phases, measured: Sequence[int] = (1, 2, 3)) -> str:
    return ", ".join(f"L{p} {delta[p - 1]:+.1f} A" for p in measured if delta[p - 1] is not None)


def _drawn(drawn: Phases | None) -> str:
    if drawn is None:
        return "no meter values from the charger while released"
    return "charger reports " + ", ".join(f"L{i} {a:.1f} A" for i, a in enumerate(drawn, 1) if a is not None)


def step_evidence(m: StepMeasure) -> str:
    text = f"{m.charger_id} {m.what}: meter {_amps(m.delta)}"
    if m.delta_power is not None:
        text += f", power {m.delta_power:+.0f} W"
    return f"{text} ({_drawn(m.drawn)})"


def measurement_findings(wiring: SiteWiring, seen: dict[str, list[StepMeasure]],
                         unseen: list[StepMeasure]) -> list[Finding]:
    """Whether the meter sees the chargers, against ``chargers_in_measurement``."""
    path = f"load_balancers.{wiring.group_index}.chargers_in_measurement"
    if wiring.chargers_in_measurement and unseen and not seen:
        return [Finding(
            "chargers_not_measured", wiring.group_id,
            f"the meter {wiring.meter} does not see the chargers: each drew current and the mains did not move",
            tuple(step_evidence(m) for m in unseen),
            f"set {path} = false (the chargers are wired before the clamps), or move the clamps so that they carry "
            "the chargers' feed", {path: False})]
    if wiring.chargers_in_measurement and unseen:
        return [Finding(
            "charger_not_measured", m.charger_id,
            f"{m.charger_id} is not behind the meter's clamps: it drew current and the mains did not move, while "
            f"{', '.join(sorted(seen))} did show",
            (step_evidence(m),),
            f"move {m.charger_id}'s feed behind the clamps of {wiring.meter}, or put it in a group of its own with "
            "chargers_in_measurement = false") for m in unseen]
    if not wiring.chargers_in_measurement and seen:
        return [Finding(
            "chargers_measured", wiring.group_id,
            f"the meter {wiring.meter} sees the chargers, but the config says it does not: the balancer counts "
            "their draw twice and leaves capacity unused",
            tuple(step_evidence(m) for steps in seen.values() for m in steps), f"set {path} = true", {path: True})]
    return []


def reversed_clamp(wiring: SiteWiring, phase: int, votes: list[tuple[str, float]]) -> Finding:
    """``votes``: (who did what, e.g. "CP1 released", and the change it showed on ``phase``)."""
    return Finding(
        "reversed_clamp", f"{wiring.meter} L{phase}",
        f"the clamp on meter phase L{phase} is the wrong way round: its current falls when a car starts drawing",
        tuple(f"{who}: meter L{phase} {d:+.1f} A" for who, d in votes),
        f"turn the clamp on L{phase} of {wiring.meter} round (its arrow pointing to the building's loads); no "
        "setting can invert a clamp, and until it is turned the balancer sees export where there is import")


def _perm_text(perm: dict[int, int]) -> str:
    return ", ".join(f"meter L{m} carries building phase {'RST'[b - 1]}" for m, b in sorted(perm.items()) if m != b)


def meter_swapped(wiring: SiteWiring, candidates: list[dict[int, int]], seen: dict[str, list[StepMeasure]],
                  signs: dict[int, int]) -> Finding:
    evidence = tuple(step_evidence(m) for steps in seen.values() for m in steps)
    if len(candidates) > 1:
        options = "; or ".join(_perm_text(p) for p in candidates)
        return Finding(
            "meter_phases_swapped", wiring.meter,
            "the meter's clamps are not on the phases of its voltage terminals (its power does not follow its "
            "current), but balanced 3-phase cars cannot show which: " + options,
            evidence, "check which conductor each clamp of the meter sits on, or run the check again with a "
                      "1-phase car plugged in, which shows the clamps one phase at a time")
    perm = candidates[0]
    inverse = {b: m for m, b in perm.items()}
    config: dict[str, Any] = {}
    for ch in wiring.chargers:
        rotation = "".join("RST"[inverse.get("RST".index(x) + 1, "RST".index(x) + 1) - 1] for x in ch.rotation)
        if rotation != ch.rotation:
            config[f"chargers.{ch.index}.phase_rotation"] = rotation
    moves = "; ".join(f"move the clamp of meter L{m} onto phase {'RST'[m - 1]}" for m, b in sorted(perm.items())
                      if m != b)
    return Finding(
        "meter_phases_swapped", wiring.meter,
        f"the meter's phases are not the building's: {_perm_text(perm)} (every charger agrees)",
        evidence,
        f"{moves} of {wiring.meter}. Only if the clamps cannot be moved: the balancer reads currents only, so "
        "giving every charger the rotation the meter sees also balances right (the config change below)", config)


def wrong_rotation(ch: ChargerWiring, steps: list[StepMeasure], rotation: str, observed: str) -> Finding:
    path = f"chargers.{ch.index}.phase_rotation"
    unseen = "" if "?" not in observed else (
        f"; the car drew on charger phase(s) {', '.join(f'L{i + 1}' for i, x in enumerate(observed) if x != '?')} "
        f"only, so the '?' letters of {observed} are assumed from the config")
    reported = "" if ch.reported_rotation is None else f"; the charger itself reports {ch.reported_rotation}"
    return Finding(
        "phase_rotation", ch.id,
        f"{ch.id} is wired {observed}, not {ch.rotation} as configured{reported}{unseen}",
        tuple(step_evidence(m) for m in steps),
        f"set {path} = \"{rotation}\" (and the charger's own ConnectorPhaseRotation / PhaseRotation setting to "
        f"{rotation})", {path: rotation})


def reported_rotation(ch: ChargerWiring, observed: str, contradicted: bool) -> Finding:
    if contradicted:
        message = (f"{ch.id} reports phase rotation {ch.reported_rotation}, but the mains show {observed}, as "
                   f"configured ({ch.rotation}): the charger's own setting is wrong")
    else:
        message = (f"{ch.id} reports phase rotation {ch.reported_rotation}, the config says {ch.rotation}; the "
                   f"mains cannot tell which is right with a balanced 3-phase draw (seen: {observed})")
    return Finding("reported_rotation", ch.id, message,
                   (f"ConnectorPhaseRotation / PhaseRotation = {ch.reported_rotation}",),
                   f"csms station change-configuration {ch.id} --key ConnectorPhaseRotation --value "
                   f"\"1.{ch.rotation}\" (2.0.1: set-variables EVSE@1.PhaseRotation={ch.rotation}) once the wiring "
                   "is confirmed")


def unexplained(ch: ChargerWiring, steps: list[StepMeasure], signs: dict[int, int]) -> Finding:
    return Finding(
        "unexplained", ch.id,
        f"no wiring of {ch.id} explains what the mains did when it was released (another load may have changed "
        "meanwhile, or the car drew on other phases than the charger reports)",
        tuple(step_evidence(m) for m in steps),
        f"run the check again with the building's other loads steady; if it repeats, measure {ch.id}'s phases "
        "with a clamp meter")


def slow_meter(wiring: SiteWiring, latencies: list[float]) -> Finding:
    return Finding(
        "slow_meter", wiring.meter,
        f"the mains showed a released car only after {max(latencies):.1f} s (more than the "
        f"{wiring.expected_response:.1f} s an EV's response and two readings take): the balancer corrects an "
        "overload that much later",
        tuple(f"release to half the step: {x:.1f} s" for x in latencies),
        "check the meter's poll interval and network; the Amp Guard answers within a second")


def _ts(at: float | None) -> str:
    return "" if at is None else datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def as_json(verdict: Verdict, wiring: SiteWiring, started_at: float, finished_at: float,
            extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The stored and served report."""
    return {
        "group": wiring.group_id, "meter": wiring.meter, "started_at": started_at, "finished_at": finished_at,
        "ok": verdict.ok, "findings": [f.as_json() for f in verdict.findings],
        "chargers": [c.as_json() for c in verdict.chargers],
        "latency_median": verdict.latency_median, "latency_max": verdict.latency_max,
        "reading_delay": verdict.reading_delay, **(extra or {}),
    }


def render(report: dict[str, Any]) -> str:
    """The report as an installer reads it in a terminal (from :func:`as_json`'s shape)."""
    lines = [f"Commissioning check of group {report['group']} (meter {report['meter']}), "
             f"{_ts(report.get('started_at'))}, {report.get('finished_at', 0) - report.get('started_at', 0):.0f} s"]
    for c in report["chargers"]:
        if not c["tested"]:
            lines.append(f"  {c['id']}: NOT TESTED: {c['reason']}")
            continue
        delta = ", ".join(f"L{i} {d:+.1f} A" for i, d in enumerate(c["delta"] or [], 1) if d is not None)
        seen = c["observed_rotation"] or "-"
        lines.append(f"  {c['id']}: mains {delta}; rotation configured {c['configured_rotation']}, reported "
                     f"{c['reported_rotation'] or '-'}, seen {seen}"
                     + (f"; {c['latency']:.1f} s to show" if c.get("latency") is not None else ""))
    if report.get("latency_median") is not None:
        lines.append(f"  meter response: median {report['latency_median']:.1f} s, slowest "
                     f"{report['latency_max']:.1f} s (release to half the step on the mains)")
    if report.get("peak_a") is not None:
        lines.append(f"  highest phase current during the check: {report['peak_a']:.1f} A "
                     f"(fuse {report.get('fuse_a', 0):.0f} A)")
    if not report["findings"]:
        lines.append("OK: the wiring matches the config" if report["ok"] else
                     "No contradiction found, but not every charger could be tested")
    for i, f in enumerate(report["findings"], 1):
        lines.append(f"FINDING {i} [{f['kind']}] {f['subject']}: {f['message']}")
        lines += [f"    evidence: {e}" for e in f["evidence"]]
        lines.append(f"    fix: {f['fix']}")
        lines += [f"    config: {path} = {_toml(value)}" for path, value in f["config"].items()]
    return "\n".join(lines)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)
