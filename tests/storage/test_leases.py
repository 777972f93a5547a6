"""PostgreSQL only: the ``group_leases`` statements, each rule of the acquire and the release on a real server."""

from __future__ import annotations

import asyncio

from csms.storage.leases import Claim, LeaseStore

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
