"""The mains meter's proof that a decrease is done (break-before-make without waiting out ``ramp_time``)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from csms.balancer import BalancerMemory
from csms.balancer.budget import phase_ceiling
from csms.balancer.estimate import CAP_TOLERANCE

from .helpers import T0, group, meter, run, session

OTHER = 10.0


def _steady_then_lowered(g, reading_after: float, a_draw: float, b_limit: float = 10.0, a_old: float = 20.0,
                         a_new: float = 10.0, b_draw: float | None = None, other: float = OTHER):
    """A drew ``a_old`` under a limit it had for long; its limit ``a_new`` was accepted at T0 + 1; the reading at
    T0 + ``reading_after`` shows the other load, A drawing ``a_draw`` and B drawing ``b_draw`` (its limit)."""
    b_draw = b_limit if b_draw is None else b_draw
    memory = BalancerMemory()
    old = session("A", limit_in_force=a_old, limit_since=T0 - 100, draw={1: a_old, 2: a_old, 3: a_old},
                  draw_at=T0 - 1)
    b = session("B", limit_in_force=b_limit, limit_since=T0 - 100, draw={1: b_draw, 2: b_draw, 3: b_draw},
                draw_at=T0 - 1)
    run(g, meter(other + a_old + b_draw, at=T0), [old, b], T0, memory)
    new = session("A", limit_in_force=a_new, limit_since=T0 + 1, draw=old.draw, draw_at=old.draw_at)
    t = T0 + reading_after
    return run(g, meter(other + a_draw + b_draw, at=t), [new, b], t, memory)


def test_a_reading_that_shows_the_car_down_proves_the_decrease():
    g = group(supply_max_current=40, max_current_online=40, margin=0.4)
    d = _steady_then_lowered(g, 2.0, a_draw=10.0)
    assert d.proven_down == {"A": (10.0, T0 + 2)}


def test_a_reading_that_still_shows_the_old_draw_proves_nothing():
    g = group(supply_max_current=40, max_current_online=40, margin=0.4)
    assert _steady_then_lowered(g, 2.0, a_draw=20.0).proven_down == {}
    assert _steady_then_lowered(g, 2.0, a_draw=14.0).proven_down == {}
    assert _steady_then_lowered(g, 2.0, a_draw=10.3).proven_down == {}  # more than half the margin (0.2 A) above


def test_a_reading_taken_before_the_decrease_was_accepted_proves_nothing():
    g = group(supply_max_current=40, max_current_online=40, margin=0.4)
    assert _steady_then_lowered(g, 0.5, a_draw=10.0).proven_down == {}


def test_a_phase_held_by_max_current_online_proves_nothing():
    """max_current_online is what the chargers together may take (a sub-board): the mains reading, which also
    carries the other load, cannot show them within it."""
    g = group(supply_max_current=63, max_current_online=25, margin=0.6)
    assert _steady_then_lowered(g, 2.0, a_draw=10.0).proven_down == {}


@settings(max_examples=300, deadline=None)
@given(
    fuse=st.sampled_from([25.0, 40.0, 63.0]),
    other=st.floats(0.0, 12.0),
    a_old=st.floats(8.0, 16.0),
    a_new=st.floats(6.0, 8.0),
    frac=st.one_of(st.just(0.0), st.floats(0.0, 0.1), st.floats(0.0, 1.0)),
    b_limit=st.floats(6.0, 8.0),
    b_frac=st.floats(0.2, 1.0),
    after=st.floats(1.01, 6.0),
)
def test_a_proof_keeps_the_phase_within_the_fuse_once_everyone_is_at_their_limit(
        fuse, other, a_old, a_new, frac, b_limit, b_frac, after):
    """Whatever A still draws (anywhere between its new and its old limit) and B (what its sample shows, up to
    its limit; a car whose sample shows it not drawing is counted at its limit, see csms.balancer.estimate):
    when the reading proves A's decrease, A and the other load take together no more than the other load the
    budget allows for plus A's new limit. So every charger at its limit, A included, keeps the phase within the
    budget's ceiling: the capacity A gives up may be handed out at once."""
    g = group(supply_max_current=fuse, max_current_online=fuse, margin=max(0.25, fuse / 100))
    a_old, a_new, b_limit = round(a_old, 1), round(a_new, 1), round(b_limit, 1)
    a_draw = a_new + frac * (a_old - a_new)
    d = _steady_then_lowered(g, after, a_draw, b_limit, a_old, a_new, b_draw=b_frac * b_limit, other=other)
    if "A" in d.proven_down:
        allowed_other = phase_ceiling(g)[0] - g.margin - d.budget[1]
        # B's draw is known to the model within CAP_TOLERANCE (a car drawing 5.6 of 6 A is taken to follow its
        # limit), and the proof leaves half the margin of the fuse to spare, not all of it.
        slack = CAP_TOLERANCE + g.margin / 2
        assert other + a_draw <= allowed_other + a_new + slack + 1e-6, (other, a_draw, allowed_other, a_new)
