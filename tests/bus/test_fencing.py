"""Fencing: a gateway runs a group's commands only from its newest leader, for its own stations, in time."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from csms.bus.commands import Refusal
from csms.bus.fencing import FenceBook, check

groups = st.sampled_from(["g1", "g2", None])


@given(st.lists(st.tuples(groups, st.integers(0, 20)), max_size=40))
def test_a_token_is_admitted_exactly_when_no_higher_one_was_seen_for_its_group(seq) -> None:
    book, highest = FenceBook(), {}
    for group, token in seq:
        expected = token >= highest.get(group, token)
        assert book.admit(group, token) is expected
        if expected:
            highest[group] = token
        assert book.mark(group) == highest[group]  # the mark never goes down
        assert book.current(group, token) is (token >= highest[group])


def test_groups_are_fenced_separately_and_no_group_is_a_group_of_its_own() -> None:
    book = FenceBook()
    assert book.admit("g1", 5) and book.admit("g2", 1) and book.admit(None, 3)
    assert not book.admit("g1", 4) and book.admit("g2", 1) and not book.admit(None, 2)


@given(st.integers(0, 9), st.integers(0, 9), groups, groups, st.floats(-5, 5))
def test_check_refuses_in_order_wrong_group_then_fenced_then_expired(mark, token, group, station_group, late):
    book = FenceBook({"g1": mark, "g2": mark, "": mark})
    before = dict(book.marks)
    verdict = check(book, group=group, token=token, deadline=100.0, station_group=station_group, now=100.0 + late)
    if group != station_group:
        assert verdict[0] is Refusal.WRONG_GROUP and book.marks == before
    elif token < mark:
        assert verdict[0] is Refusal.FENCED and book.marks == before
    else:
        assert book.mark(group) == token  # a newer leader fences the older one, even with a late command
        assert (verdict is None) is (100.0 + late <= 100.0) and (verdict is None or verdict[0] is Refusal.EXPIRED)


@given(st.lists(st.tuples(st.booleans(), groups, st.integers(0, 20)), max_size=40))
def test_a_token_read_from_the_leases_only_raises_a_mark(seq) -> None:
    """``raise_to`` (a restarted gateway reading the leases) and commands' ``admit`` together: the mark is the
    highest token either told, and a command below it is refused."""
    book, highest = FenceBook(), {}
    for from_lease, group, token in seq:
        if from_lease:
            book.raise_to(group, token)
            highest[group] = max(highest.get(group, token), token)
        else:
            admitted = book.admit(group, token)
            assert admitted is (token >= highest.get(group, token))
            if admitted:
                highest[group] = token
        assert book.mark(group) == highest[group]
