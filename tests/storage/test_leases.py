"""PostgreSQL only: the ``group_leases`` and ``controllers`` statements, each rule of the acquire, the release and a
manager's round (presence and the claims it defers to a live controller that outranks it) on a real server."""

from __future__ import annotations

import asyncio

from csms.storage.leases import Claim, LeaseStore, Presence

async def open_store(url: str, migrate: bool = False) -> LeaseStore:
    return await LeaseStore.open(url, timeout=2.0, migrate_first=migrate)


async def test_acquire_renew_refuse_take_over_and_release(postgres_url):
    a = await open_store(postgres_url, migrate=True)
    b = await open_store(postgres_url)
    try:
        assert await a.acquire("a", [Claim("g1", 30), Claim("g2", 0.3)]) == {"g1": 1, "g2": 1}
        assert await a.acquire("a", [Claim("g1", 30, held=1)]) == {"g1": 1}  # a renewal keeps the token
        assert await b.acquire("b", [Claim("g1", 30), Claim("g2", 30)]) == {}  # both still held by a
        await asyncio.sleep(0.35)  # g2's lease runs out on the server's clock
        assert await b.acquire("b", [Claim("g1", 30), Claim("g2", 30)]) == {"g2": 2}  # a takeover: next token
        assert await a.acquire("a", [Claim("g2", 30, held=1)]) == {}
        rows = {r.group_id: r for r in await a.leases()}
        assert (rows["g2"].holder, rows["g2"].token) == ("b", 2) and 29 < rows["g2"].remaining <= 30
        assert await b.release("b", {"g2": 2}) == ["g2"]
        assert await a.acquire("a", [Claim("g2", 30)]) == {"g2": 3}  # released: taken at once, next token
    finally:
        await a.close()
        await b.close()


async def test_a_holder_that_lost_track_of_its_term_starts_a_new_one(postgres_url):
    """The row is ours and live, but we claim without its token (we stepped down, or restarted): a new term,
    so that a release of the old term still on its way cannot end the new one."""
    s = await open_store(postgres_url, migrate=True)
    try:
        assert await s.acquire("a", [Claim("g", 30)]) == {"g": 1}
        assert await s.acquire("a", [Claim("g", 30)]) == {"g": 2}
        assert await s.acquire("a", [Claim("g", 30, held=1)]) == {"g": 3}  # 1 is not the live term
        assert await s.release("a", {"g": 2}) == []  # a late release of an older term changes nothing
        assert await s.release("b", {"g": 3}) == []  # nor one by another holder
        assert await s.acquire("b", [Claim("g", 30)]) == {}
        assert await s.acquire("a", [Claim("g", 30, held=3)]) == {"g": 3}
        assert await s.acquire("a", [Claim("g", 0.2, held=3)]) == {"g": 3}
        await asyncio.sleep(0.25)
        assert await s.acquire("a", [Claim("g", 30, held=3)]) == {"g": 4}  # expired on the server: a new term
    finally:
        await s.close()


async def test_concurrent_claims_on_the_same_groups_never_deadlock_or_share_a_group(postgres_url):
    """Four holders claim the same groups in different orders at once, over and over: every group has one holder
    at a time (each answer agrees with the row) and no statement fails (rows are locked in group order)."""
    stores = [await open_store(postgres_url, migrate=(i == 0)) for i in range(4)]
    groups = [f"g{i}" for i in range(6)]
    try:
        async def claim(i: int, round_: int) -> dict[str, int]:
            order = groups[round_ % 6:] + groups[: round_ % 6]
            return await stores[i].acquire(f"n{i}", [Claim(g, 0.05) for g in (order if i % 2 else order[::-1])])

        seen: dict[str, dict[int, str]] = {g: {} for g in groups}
        for round_ in range(40):
            answers = await asyncio.gather(*(claim(i, round_) for i in range(4)))
            for i, won in enumerate(answers):
                for g, token in won.items():
                    assert seen[g].setdefault(token, f"n{i}") == f"n{i}", f"token {token} of {g} given twice"
            await asyncio.sleep(0.01 * (round_ % 7))
        assert all(len(tokens) > 1 for tokens in seen.values())  # the groups did change hands
    finally:
        for s in stores:
            await s.close()


async def test_a_round_refreshes_the_presence_claims_and_returns_who_is_live(postgres_url):
    a = await open_store(postgres_url, migrate=True)
    b = await open_store(postgres_url)
    try:
        won, live = await a.round("a/1", "a", 30, ["g1", "g2"], [Claim("g1", 30)])
        assert won == {"g1": 1} and live == []  # the live set is as of before this round: a was not live yet
        won, live = await b.round("b/1", "b", 0.3, ["g2"], [])
        assert won == {} and [(p.holder, p.node, p.groups) for p in live] == [("a/1", "a", ("g1", "g2"))]
        won, live = await a.round("a/1", "a", 30, ["g1", "g2"], [Claim("g1", 30, held=1)])
        assert won == {"g1": 1} and sorted(p.holder for p in live) == ["a/1", "b/1"]
        first = {p.holder: p.expires_at for p in live}["a/1"]
        _, live = await a.round("a/1", "a", 30, ["g1", "g2"], [])
        assert {p.holder: p.expires_at for p in live}["a/1"] > first  # renewed: the expiry moves on
        remaining = {p.holder: p.expires_at for p in await a.presences()}
        assert 29 < remaining["a/1"] <= 30 and remaining["b/1"] <= 0.3
    finally:
        await a.close()
        await b.close()


async def test_a_free_group_is_left_to_a_live_controller_that_outranks_the_claimant(postgres_url):
    """``above`` names the holders that should lead the group instead: while one is live and wants the group, a
    claim without a held token is not made; once its presence runs out (or it no longer wants the group, or it
    leaves), the same claim is. A renewal (``held``) is never held back."""
    a = await open_store(postgres_url, migrate=True)
    b = await open_store(postgres_url)
    try:
        await b.round("b/1", "b", 0.3, ["g1", "g2"], [])
        assert (await a.round("a/1", "a", 30, ["g1", "g2"], [Claim("g1", 30, above=("b/1",)), Claim("g2", 30)]))[0] \
            == {"g2": 1}
        assert (await a.round("a/1", "a", 30, ["g2"], [Claim("g2", 30, held=1, above=("b/1",))]))[0] == {"g2": 1}
        await b.round("b/1", "b", 30, ["g2"], [])  # b no longer wants g1
        assert (await a.round("a/1", "a", 30, ["g1"], [Claim("g1", 30, above=("b/1",))]))[0] == {"g1": 1}
        assert (await a.release("a/1", {"g1": 1})) == ["g1"]
        await b.round("b/1", "b", 30, ["g1"], [])
        assert (await a.round("a/1", "a", 30, ["g1"], [Claim("g1", 30, above=("b/1", "gone/1"))]))[0] == {}
        await b.leave("b/1")
        assert (await a.round("a/1", "a", 30, ["g1"], [Claim("g1", 30, above=("b/1",))]))[0] == {"g1": 2}
        await b.round("b/1", "b", 0.2, ["g1", "g2"], [])
        await asyncio.sleep(0.25)  # b's presence runs out on the server's clock
        won, live = await a.round("a/1", "a", 30, ["g2"], [Claim("g2", 30, above=("b/1",))])
        assert won == {"g2": 2} and [p.holder for p in live] == ["a/1"]
    finally:
        await a.close()
        await b.close()


async def test_presences_long_dead_are_deleted_by_a_round(postgres_url):
    a = await open_store(postgres_url, migrate=True)
    try:
        await a.round("old/1", "old", 30, ["g1"], [])
        await a.conn.execute("UPDATE controllers SET expires_at = expires_at - 7200 WHERE holder = 'old/1'")
        await a.round("a/1", "a", 30, ["g1"], [])
        assert [p.holder for p in await a.presences()] == ["a/1"]
        assert isinstance((await a.presences())[0], Presence)
    finally:
        await a.close()
