"""The operator caps' keeper (:class:`csms.runtime.operator_caps.OperatorCaps`) on its own: what it tells the
balancer, what it stores, and what a restart brings back (a lapsed cap and a charger no longer balanced are
dropped)."""

from __future__ import annotations

import pytest

from csms.config import parse_config
from csms.operations.results import NotBalanced
from csms.runtime.operator_caps import NOT_LED, OperatorCaps
from csms.storage.caps import load_caps, save_cap
from csms.storage.database import Storage

T0 = 1_800_000_000.0


class FakeBalancer:
    def __init__(self) -> None:
        self.caps: dict[str, tuple[float | None, float | None]] = {}

    def set_operator_cap(self, charger_id: str, amps: float | None, until: float | None = None) -> bool:
        self.caps[charger_id] = (amps, until)
        return True

    async def next_decision(self, charger_id: str, timeout: float):
        return None


def config(tmp_path):
    return parse_config({
        "server": {"security_profile": 0},
        "storage": {"database": str(tmp_path / "caps.sqlite")},
        "organisations": [{"id": "org", "name": "Org"}],
        "chargers": [{"id": "A", "password": "0123456789abcdef", "organisation": "org"},
                     {"id": "LONE", "password": "0123456789abcdef", "organisation": "org"}],
        "load_balancers": [{"id": "g", "name": "G", "organisation": "org", "chargers": ["A"], "supply_max_current": 25,
                            "max_current_online": 25, "max_current_offline": 10}],
    })


async def test_set_clear_and_a_charger_in_no_group(tmp_path):
    cfg = config(tmp_path)
    now = [T0]
    async with Storage(cfg.storage.database) as storage:
        balancer = FakeBalancer()
        caps = OperatorCaps(cfg, balancer, storage, lambda: now[0])  # type: ignore[arg-type]
        cap, allowed = await caps.set_cap("A", 8.0, T0 + 60, None, "api 10.0.0.1")
        assert balancer.caps["A"] == (8.0, T0 + 60) and allowed.limit is None
        assert [dict(r) for r in await storage.read(load_caps)] == [
            {"station_id": "A", "limit_a": 8.0, "until": T0 + 60, "set_at": T0, "by": "api 10.0.0.1"}]
        now[0] = T0 + 60
        assert caps.cap("A") is None  # lapsed: the balancer ignores it from now on too
        lifted, _ = await caps.clear_cap("A", None, "cli")
        assert lifted is None and balancer.caps["A"] == (None, None)
        assert await storage.read(load_caps) == []
        with pytest.raises(NotBalanced):
            await caps.set_cap("LONE", 8.0, None, None, "cli")


async def test_restore_keeps_live_caps_and_drops_the_rest(tmp_path):
    cfg = config(tmp_path)
    async with Storage(cfg.storage.database) as storage:
        await storage.write(save_cap("A", 7.0, None, T0 - 10, "cli"))
        await storage.write(save_cap("LONE", 7.0, None, T0 - 10, "cli"))
        balancer = FakeBalancer()
        caps = OperatorCaps(cfg, balancer, storage, lambda: T0)  # type: ignore[arg-type]
        assert await caps.restore() == 1
        assert balancer.caps == {"A": (7.0, None)} and caps.cap("A").limit == 7.0
        assert [r["station_id"] for r in await storage.read(load_caps)] == ["A"]

        await storage.write(save_cap("A", 7.0, T0 - 1, T0 - 10, "cli"))  # lapsed while the system was down
        later = OperatorCaps(cfg, FakeBalancer(), storage, lambda: T0)  # type: ignore[arg-type]
        assert await later.restore() == 0 and await storage.read(load_caps) == []


class LeadingBalancer(FakeBalancer):
    """A controller's balancer: it acts only for the groups' chargers it leads (``led``), as the real one does."""

    def __init__(self, led: set[str]) -> None:
        super().__init__()
        self.led = led

    def set_operator_cap(self, charger_id: str, amps: float | None, until: float | None = None) -> bool:
        if charger_id not in self.led:
            return False
        return super().set_operator_cap(charger_id, amps, until)


async def test_a_controller_leading_nothing_keeps_the_stored_caps(tmp_path):
    """Found in review: a controller started with its led part of the site (nothing, at start) took every
    stored cap for one of a charger in no group and deleted it: restarting any controller wiped the caps."""
    cfg = config(tmp_path)
    async with Storage(cfg.storage.database) as storage:
        await storage.write(save_cap("A", 7.0, None, T0 - 10, "cli"))
        caps = OperatorCaps(cfg, LeadingBalancer(set()), storage, lambda: T0)  # type: ignore[arg-type]
        assert await caps.restore() == 1
        assert [r["station_id"] for r in await storage.read(load_caps)] == ["A"]


async def test_a_cap_set_on_one_node_reaches_the_controller_leading_the_group(tmp_path):
    cfg = config(tmp_path)
    async with Storage(cfg.storage.database) as storage:
        gateway = OperatorCaps(cfg, LeadingBalancer(set()), storage, lambda: T0)  # type: ignore[arg-type]
        leader_balancer = LeadingBalancer({"A"})
        leader = OperatorCaps(cfg, leader_balancer, storage, lambda: T0)  # type: ignore[arg-type]

        cap, allowed = await gateway.set_cap("A", 8.0, None, None, "api 10.0.0.1")
        assert allowed.limit is None and allowed.reason == NOT_LED  # stored; not applied here
        assert leader_balancer.caps == {}
        assert await leader.refresh() == 1
        assert leader_balancer.caps == {"A": (8.0, None)} and leader.cap("A") == cap
        assert await leader.refresh() == 0  # nothing new: the balancer is not told again

        await gateway.clear_cap("A", None, "cli")
        assert await leader.refresh() == 1 and leader_balancer.caps == {"A": (None, None)} and leader.cap("A") is None


async def test_a_refresh_that_raced_a_change_made_here_is_not_applied(tmp_path):
    cfg = config(tmp_path)
    async with Storage(cfg.storage.database) as storage:
        balancer = LeadingBalancer({"A"})
        caps = OperatorCaps(cfg, balancer, storage, lambda: T0)  # type: ignore[arg-type]
        read = storage.read

        async def slow_read(query):
            rows = await read(query)  # the state before the change below
            await caps.set_cap("A", 9.0, None, None, "cli")
            return rows
        storage.read = slow_read  # type: ignore[method-assign]
        assert await caps.refresh() == 0
        storage.read = read  # type: ignore[method-assign]
        assert caps.cap("A").limit == 9.0 and balancer.caps["A"] == (9.0, None)


async def test_a_charger_held_by_a_commissioning_check_refuses_the_operators_caps_until_it_ends(tmp_path):
    """The check steers its chargers through their caps: an operator's set or clear meanwhile would lift a hold
    (a car charging beside the one released alone, its current blamed on that one) and be undone at the end."""
    from csms.operations.results import UnderCheck
    from csms.web.operator import STATUS

    cfg = config(tmp_path)
    async with Storage(cfg.storage.database) as storage:
        balancer = FakeBalancer()
        caps = OperatorCaps(cfg, balancer, storage, lambda: T0)  # type: ignore[arg-type]
        caps.hold_for_check("g", ["A"])
        await caps.set_cap("A", 0.0, T0 + 60, None, "commissioning", check=True)
        with pytest.raises(UnderCheck, match="commissioning check of group 'g' holds A"):
            await caps.clear_cap("A", None, "cli 127.0.0.1")
        with pytest.raises(UnderCheck):
            await caps.set_cap("A", 16.0, None, None, "cli 127.0.0.1")
        assert balancer.caps["A"] == (0.0, T0 + 60)
        assert STATUS[UnderCheck] == 409
        caps.end_check(["A"])
        await caps.clear_cap("A", None, "cli 127.0.0.1")
        assert balancer.caps["A"] == (None, None)


async def test_a_check_puts_the_operators_own_cap_back_as_it_was(tmp_path):
    """After the check, the operator's cap is theirs again: the same limit, end, author and moment it was set
    (not a new cap set by the check at its end)."""
    cfg = config(tmp_path)
    now = [T0]
    async with Storage(cfg.storage.database) as storage:
        balancer = FakeBalancer()
        caps = OperatorCaps(cfg, balancer, storage, lambda: now[0])  # type: ignore[arg-type]
        mine, _ = await caps.set_cap("A", 12.0, T0 + 3600, None, "api 10.0.0.1")
        now[0] = T0 + 100
        caps.hold_for_check("g", ["A"])
        await caps.set_cap("A", 0.0, now[0] + 60, None, "commissioning", check=True)
        now[0] = T0 + 200
        put, _ = await caps.put_back(mine)
        caps.end_check(["A"])
        assert put == mine and caps.cap("A") == mine and balancer.caps["A"] == (12.0, T0 + 3600)
        assert put.as_json()["setAt"] == "2027-01-15T08:00:00Z" and put.as_json()["by"] == "api 10.0.0.1"
        assert [dict(r) for r in await storage.read(load_caps)] == [
            {"station_id": "A", "limit_a": 12.0, "until": T0 + 3600, "set_at": T0, "by": "api 10.0.0.1"}]
