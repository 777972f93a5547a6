"""Step 2 of the allocation: what a charger the balancer cannot steer right now is counted at (reserved), so that
the controlled sessions share only what is left.
"""

from __future__ import annotations

from .grid import floor_step
from .memory import ChargerMemory
from .model import ChargerInput, ChargerLimit, ControlState
from .operator_cap import active_cap, capped_reason
from .run_state import RunState

_FALLBACK = ControlState.FALLBACK
_PENDING = ControlState.PENDING
_NOT_OBEYING = ControlState.NOT_OBEYING


def most_drawn(control: ControlState, in_force: float | None, max_current: float,
               pending: float | None = None) -> float:
    """The most a connected charger not (yet) steered may draw per phase (A): the limit it accepted, or its
    ``max_current`` when none is known in force or it draws over its limit; while a new limit (``pending``) is
    in flight, the larger of the two. Its offline fallback, which binds on its offline phase, is counted apart:
    0 here. The allocation reserves it so (:func:`reserve`) and the delivery's break-before-make counts it
    so (:mod:`csms.smart_charging.exposure`)."""
    if control is _FALLBACK:
        worst = 0.0
    elif control is _NOT_OBEYING or in_force is None:
        worst = max_current
    else:
        worst = in_force
    if control is _PENDING and pending is not None and pending > worst:
        worst = pending
    return worst


def fallback_phases(ch: ChargerInput) -> tuple[int, ...]:
    """The building phases a charger's offline fallback binds on: as installed, else its ``offline_phase``."""
    return ch.fallback_phases or (ch.spec.offline_phase,)


def _on(phases: tuple[int, ...]) -> str:
    return "+".join(f"L{p}" for p in phases)


def reserve(run: RunState, ch: ChargerInput, mem: ChargerMemory) -> ChargerLimit:
    """Counts a charger the balancer cannot steer right now at the most it may draw."""
    spec = ch.spec
    reserved = run.reserved
    if not ch.session_active:
        mem.running_since = mem.paused_since = mem.under_since = mem.trim_cap = mem.probe = None
        mem.charged = 0.0
    if not ch.connected:
        if ch.control is _FALLBACK:
            on = fallback_phases(ch)
            for p in on:
                if p in reserved:
                    reserved[p] += spec.offline_current
            fallback = f"{spec.offline_current:.1f} A on {_on(on)}"
            return ChargerLimit(spec.offline_current, on,
                                f"disconnected; its offline fallback ({fallback}) is in force and counted",
                                False, spec.offline_current)
        wired = run.phase_set(spec.phases_wired)
        for p in wired:
            reserved[p] += spec.max_current
        return ChargerLimit(spec.max_current, wired, "disconnected, and what it applies meanwhile is not known "
                            "(no fallback known to be installed, or a limit of ours that lapses in it): counted at "
                            "its max_current", False, spec.max_current)
    # Connected, but its latest limit is not (yet) in force.
    phases = run.phase_set(ch.phases_in_use or spec.phases_wired)
    control = ch.control
    worst = most_drawn(control, ch.limit_in_force, spec.max_current, mem.target)  # fallback: counted below
    target = mem.target if mem.target is not None else (run.min if ch.session_active else 0.0)
    if control is _FALLBACK:
        target = min(target, spec.offline_current)
    else:
        target = min(target, worst, spec.max_current)
    # The operator's cap lowers the limit planned for it, never what it is counted at (it may not obey either).
    op = active_cap(ch, run.now) if ch.operator_cap is not None else None
    capped = op is not None and op < target
    if capped:
        target = op  # type: ignore[assignment]
    target = floor_step(target)
    if target < run.min:
        target = 0.0
    counted = max(worst, target)
    for p in phases:
        reserved[p] += counted
    if control is _FALLBACK:
        for p in fallback_phases(ch):
            extra = spec.offline_current - (counted if p in phases else 0.0)
            if p in reserved and extra > 0:
                reserved[p] += extra
    why = {
        ControlState.PENDING: "its new limit is not accepted yet",
        ControlState.UNCONTROLLED: "it rejected or did not answer its last limit",
        ControlState.NOT_OBEYING: "it draws more than its limit",
        ControlState.FALLBACK: f"its offline fallback ({spec.offline_current:.1f} A on {_on(fallback_phases(ch))}) "
                               "is in force",
        ControlState.DISCONNECTED_UNKNOWN: "its state is not known",
    }.get(control, str(control))
    why = f"not under control ({why}): counted at {counted:.1f} A"
    if capped:
        why += f"; {capped_reason(op, ch.operator_cap_until)}"  # type: ignore[arg-type]
    return ChargerLimit(target, phases, why, True, counted)
