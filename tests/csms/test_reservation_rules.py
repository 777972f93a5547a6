"""The reservation rules (:mod:`csms.domain.reservations`), property-tested: who may use a reservation,
when it is in force, how it expires and that a final state is never left."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from csms.domain.reservations import (DEFAULT_DURATION, FINAL, MAX_DURATION, Reservation, ReservationState, covers,
                                      expiry, may_use, transition)

tokens = st.text(alphabet="ABCDEF0123", min_size=1, max_size=6)
parents = st.none() | tokens
times = st.floats(min_value=0, max_value=2e9, allow_nan=False)
states = st.sampled_from(list(ReservationState))


@st.composite
def reservations(draw, state=states) -> Reservation:
    return Reservation(draw(st.integers(1, 10**6)), "CP1", draw(st.integers(0, 4)), draw(tokens), draw(parents),
                       draw(times), draw(state), "test", 0.0)


@given(reservations(), tokens, parents)
def test_its_own_token_always_may_use_it_and_another_only_through_the_same_parent(r, token, parent):
    assert may_use(r, r.id_token, parent)
    if token != r.id_token:
        assert may_use(r, token, parent) == (r.parent is not None and parent == r.parent)


@given(reservations(), tokens)
def test_a_reservation_without_a_parent_is_its_token_s_alone(r, token):
    r = Reservation(r.id, r.station_id, r.connector, r.id_token, None, r.expires_at, r.state, "t", 0.0)
    assert may_use(r, token, None) == (token == r.id_token)
    assert may_use(r, token, "ANY") == (token == r.id_token)


@given(reservations(), times)
def test_in_force_only_while_active_and_before_its_expiry(r, now):
    assert r.in_force(now) == (r.state is ReservationState.ACTIVE and now < r.expires_at)
    state = r.at(now).state
    if r.state is ReservationState.ACTIVE:
        assert state is (ReservationState.ACTIVE if now < r.expires_at else ReservationState.EXPIRED)
    else:
        assert state is r.state  # a reservation that ended stays as it ended


@given(reservations(st.just(ReservationState.ACTIVE)), times, times)
def test_expiry_is_monotonic_once_expired_it_stays_expired(r, a, b):
    early, late = min(a, b), max(a, b)
    if not r.in_force(early):
        assert not r.in_force(late)


@given(reservations(), st.integers(0, 4))
def test_connector_zero_covers_every_connector(r, connector):
    assert covers(r, connector) == (r.connector in (0, connector))


@given(states, states)
def test_a_final_state_is_never_left(current, new):
    after = transition(current, new)
    assert after is (current if current in FINAL else new)


@given(times, st.none() | st.integers(1, MAX_DURATION))
def test_the_expiry_from_a_duration(now, seconds):
    assert expiry(now, seconds, None) == now + (DEFAULT_DURATION if seconds is None else seconds)


@given(times, st.floats(min_value=-1e6, max_value=2 * MAX_DURATION, allow_nan=False))
def test_an_expiry_must_be_in_the_future_and_not_too_far(now, offset):
    at = now + offset
    if at <= now or at - now > MAX_DURATION:
        with pytest.raises(ValueError):
            expiry(now, None, at)
    else:
        assert expiry(now, None, at) == at
