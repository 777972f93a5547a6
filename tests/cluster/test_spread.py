"""The rule that spreads groups among controllers (rendezvous hashing) and the roster a manager keeps, without a
database: every group has one preferred controller among the live ones that want it, a change of membership moves
only the groups it must, each controller gets a fair share, and a group is handed only to a settled controller."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from csms.cluster.spread import Member, Roster, assignment, preferred, rank, weight

names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=12)
group_ids = st.lists(names, min_size=1, max_size=60, unique=True)
node_names = st.lists(names, min_size=1, max_size=8, unique=True)


def members(nodes: list[str], groups: list[str]) -> list[Member]:
    return [Member(f"{n}/0", n, frozenset(groups)) for n in nodes]


def test_the_weight_is_the_same_in_every_process_and_release():
    # Pinned: controllers of two releases must agree on every group's preferred one, or they would hand a group
    # back and forth. Changing the hash is a change every controller must get at once.
    assert (weight("garage", "c1"), weight("g1", "a")) == (0x2A89D07559DB7B6C, 0x3C1E4135BE4908F9)
    assert weight("garage", "c1") != weight("garage", "c2") and weight("g", "c1") != weight("c1", "g")


@given(group_ids, node_names, st.randoms())
def test_every_group_has_exactly_one_preferred_live_controller_whatever_the_order(groups, nodes, rnd):
    live = members(nodes, groups)
    for g in groups:
        best = preferred(g, live)
        assert best in live
        assert all(rank(g, m) < rank(g, best) for m in live if m is not best)  # strictly: no tie to break
        shuffled = list(live)
        rnd.shuffle(shuffled)
        assert preferred(g, shuffled) == best


@given(group_ids, node_names)
def test_only_controllers_that_want_a_group_are_preferred_for_it(groups, nodes):
    live = [Member(f"{n}/0", n, frozenset(groups[i % 2::2])) for i, n in enumerate(nodes)]
    for g in groups:
        best = preferred(g, live)
        wanting = [m for m in live if g in m.groups]
        assert (best is None) == (not wanting) and (best is None or best in wanting)


def test_two_processes_of_one_node_name_are_ordered_by_their_holder():
    old, new = Member("c1/aaaa", "c1", frozenset("g")), Member("c1/bbbb", "c1", frozenset("g"))
    assert preferred("g", [old, new]) == preferred("g", [new, old]) == new


@given(group_ids, node_names, names)
def test_a_controller_joining_takes_only_groups_and_takes_them_from_nobody_else(groups, nodes, joiner):
    if joiner in nodes:
        return
    before = assignment(groups, members(nodes, groups))
    after = assignment(groups, members([*nodes, joiner], groups))
    moved = {g for g in groups if before[g] != after[g]}
    assert all(after[g] == f"{joiner}/0" for g in moved)  # the rest stay where they were


@given(group_ids, node_names.filter(lambda n: len(n) > 1), st.data())
def test_a_controller_leaving_moves_only_its_own_groups(groups, nodes, data):
    gone = data.draw(st.sampled_from(nodes))
    before = assignment(groups, members(nodes, groups))
    after = assignment(groups, members([n for n in nodes if n != gone], groups))
    assert {g for g in groups if before[g] != after[g]} == {g for g in groups if before[g] == f"{gone}/0"}


@settings(max_examples=30, deadline=None)
@given(st.lists(names, min_size=2, max_size=6, unique=True))
def test_each_controller_gets_a_fair_share_of_many_groups(nodes):
    groups = [f"group-{i}" for i in range(3000)]
    share = Counter(assignment(groups, members(nodes, groups)).values())
    fair = len(groups) / len(nodes)
    assert sorted(share) == sorted(f"{n}/0" for n in nodes)
    assert all(abs(count - fair) < 0.2 * fair for count in share.values()), (fair, share)


@settings(max_examples=30, deadline=None)
@given(node_names.filter(lambda n: len(n) > 1), names)
def test_about_one_nth_of_the_groups_move_when_one_of_n_controllers_joins(nodes, joiner):
    if joiner in nodes:
        return
    groups = [f"group-{i}" for i in range(3000)]
    before = assignment(groups, members(nodes, groups))
    after = assignment(groups, members([*nodes, joiner], groups))
    moved = sum(before[g] != after[g] for g in groups)
    expected = len(groups) / (len(nodes) + 1)
    assert abs(moved - expected) < 0.2 * expected, (moved, expected)


# -- the roster ---------------------------------------------------------------------------------------------------


def seen(holder: str, node: str, groups: str, expires_at: float) -> Member:
    return Member(holder, node, frozenset(groups.split()), expires_at)


def test_a_group_is_handed_only_to_a_controller_seen_renewing_its_presence():
    groups = [f"g{i}" for i in range(20)]
    me = Roster("a/1", "a")
    assert not me.known and me.outranking("g1") == [] and me.hand_over_to("g1") is None
    me.saw([], groups)
    assert me.known
    theirs = [g for g in groups if preferred(g, members(["a", "b"], groups)).node == "b"]
    assert theirs, "b should outrank a for some of 20 groups"
    me.saw([seen("b/1", "b", " ".join(groups), 100.0)], groups)
    assert [g for g in groups if me.outranking(g) == ["b/1"]] == theirs
    assert all(me.hand_over_to(g) is None for g in groups)  # seen once: not settled
    me.saw([seen("b/1", "b", " ".join(groups), 100.0), seen("a/1", "a", "", 0.0)], groups)
    assert all(me.hand_over_to(g) is None for g in groups)  # seen again, not renewed (and our own row ignored)
    me.saw([seen("b/1", "b", " ".join(groups), 101.0)], groups)
    assert [g for g in groups if (m := me.hand_over_to(g)) is not None and m.holder == "b/1"] == theirs
    me.saw([seen("b/1", "b", " ".join(groups), 101.5)], groups)
    assert [g for g in groups if me.hand_over_to(g) is not None] == theirs  # stays settled while seen
    assert me.saw([], groups) == ([], [seen("b/1", "b", " ".join(groups), 101.5)])  # b left
    me.saw([seen("b/1", "b", " ".join(groups), 103.0)], groups)
    assert all(me.hand_over_to(g) is None for g in groups)  # back, but no longer settled


def test_a_controller_that_does_not_want_a_group_never_holds_it_back():
    me = Roster("a/1", "a")
    for t in (1.0, 2.0):
        me.saw([seen("b/1", "b", "", t)], ["g"])
    assert me.outranking("g") == [] and me.hand_over_to("g") is None


@given(group_ids, node_names)
def test_hand_overs_never_go_round_in_a_circle(groups, nodes):
    """With the same view, if one controller would hand a group to another, that one would keep it."""
    def roster(me: str) -> Roster:
        r = Roster(f"{me}/0", me)
        for t in (1.0, 2.0):
            r.saw([Member(f"{n}/0", n, frozenset(groups), t) for n in nodes], groups)
        return r
    rosters = {n: roster(n) for n in nodes}
    for g in groups:
        targets = {n: r.hand_over_to(g) for n, r in rosters.items()}
        keepers = [n for n, t in targets.items() if t is None]
        assert len(keepers) == 1 and all(t is not None and t.node == keepers[0] for t in targets.values()
                                         if t is not None)
