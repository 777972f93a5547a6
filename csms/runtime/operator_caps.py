"""The operator's caps: the :class:`csms.operations.caps.CapKeeper` that the operator commands are given.

It keeps each cap in the balancer (an input of its allocation, :meth:`BalancerController.set_operator_cap`) and
in storage (``operator_caps``), so that a restart keeps it, and answers with what the balancer then allows: the
group's first decision made after the change. Nothing is sent to the charger from here: the delivery owns the
charger's profile stack, and its next limit, the capped one, goes out as any other.

Scaled out, the keeper of every node holds the whole site's config (a cap is checked against it, and only a cap
of a charger in no group at all is dropped), while its balancer acts only for the groups the node leads (it
ignores the rest). The operator may set a cap on any node, and leadership moves: so each node re-reads the
stored caps every :data:`REFRESH_EVERY` s and whenever it starts leading a group (:meth:`refresh`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from csms.balancer.controller import BalancerController
from csms.config import SiteConfig
from csms.operations.caps import Allowed, OperatorCap
from csms.runtime.aio import cancel_and_wait
from csms.operations.results import BadArguments, NotBalanced, UnderCheck
from csms.storage import caps as stored
from csms.storage.database import Storage

#: Seconds an answer waits for the balancer's next decision (a run takes milliseconds after its debounce).
DECISION_WAIT = 2.0
#: Seconds between two reads of the stored caps on a node of a scaled-out deployment: the longest a cap set on
#: another node waits before the controller leading its group applies it.
REFRESH_EVERY = 5.0
#: What a node that does not balance the charger's group answers after a change of its cap.
NOT_LED = (f"this node does not balance the charger's group: the controller leading it applies the cap within "
           f"{REFRESH_EVERY:.0f} s")

log = logging.getLogger("csms.operator_caps")


class OperatorCaps:
    """Every station's operator cap, in the balancer and on disk."""

    def __init__(self, cfg: SiteConfig, balancer: BalancerController, storage: Storage, clock: Callable[[], float]):
        """``cfg``: the whole site (not the part a controller leads)."""
        self.cfg = cfg
        self.balancer = balancer
        self.storage = storage
        self.clock = clock
        self._caps: dict[str, OperatorCap] = {}
        #: Chargers a commissioning check holds, with the group under check (see :meth:`hold_for_check`).
        self._under_check: dict[str, str] = {}
        #: Bumped by every change made here: a refresh whose read raced one is not applied.
        self._changes = 0
        self._task: asyncio.Task[None] | None = None

    def apply_config(self, cfg: SiteConfig) -> None:
        """A reloaded config (the whole site), after the balancer took it: which chargers are balanced (and may be
        capped) is read from it from now on, and every cap in force is given to the balancer again (a charger
        that moved group, or joined one, or a group this node now leads, is a new entry there). A cap of a
        charger in no group stays stored, unused."""
        self.cfg = cfg
        for sid in list(self._caps):
            cap = self.cap(sid)
            if cap is not None and cfg.group_of(sid) is not None:
                self.balancer.set_operator_cap(sid, cap.limit, cap.until)

    def cap(self, station_id: str) -> OperatorCap | None:
        cap = self._caps.get(station_id)
        if cap is not None and cap.until is not None and self.clock() >= cap.until:
            return None  # lapsed: the balancer ignores it too
        return cap

    async def restore(self) -> int:
        """Gives the balancer the caps stored before a restart (a lapsed one is dropped); returns how many."""
        now = self.clock()
        for row in await self.storage.read(stored.load_caps):
            sid, until = row["station_id"], row["until"]
            if (until is not None and until <= now) or self.cfg.group_of(sid) is None:
                await self.storage.write(stored.delete_cap(sid))
                continue
            self._caps[sid] = OperatorCap(sid, row["limit_a"], until, row["set_at"], row["by"] or "")
            self.balancer.set_operator_cap(sid, row["limit_a"], until)
        return len(self._caps)

    async def refresh(self) -> int:
        """Reads the stored caps again and gives the balancer what changed since (set or lifted on another
        node, or by this node before it led the group); returns how many changed. A lapsed cap is left for the
        balancer to ignore. Not applied if a change made here raced the read: the next refresh sees it."""
        before = self._changes
        rows = await self.storage.read(stored.load_caps)
        if self._changes != before:
            return 0
        fresh = {r["station_id"]: OperatorCap(r["station_id"], r["limit_a"], r["until"], r["set_at"], r["by"] or "")
                 for r in rows}
        changed = [sid for sid in self._caps.keys() | fresh.keys() if self._caps.get(sid) != fresh.get(sid)]
        self._caps = fresh
        for sid in changed:
            cap = fresh.get(sid)
            if self.cfg.group_of(sid) is not None:
                self.balancer.set_operator_cap(sid, cap.limit if cap else None, cap.until if cap else None)
        return len(changed)

    def start_refreshing(self) -> None:
        """Refreshes every :data:`REFRESH_EVERY` s until :meth:`stop` (a node of a scaled-out deployment)."""
        if self._task is None:
            self._task = asyncio.create_task(self._refreshing(), name="operator caps refresh")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait([task])

    async def _refreshing(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(REFRESH_EVERY)
            try:
                changed = await self.refresh()
            except Exception as exc:  # storage away: keep the caps we have, try again
                if not failing:
                    log.warning("operator caps: could not read the stored caps (%s); keeping the %d known, retrying "
                                "every %.0f s", exc, len(self._caps), REFRESH_EVERY)
                failing = True
                continue
            if failing:
                log.info("operator caps: read again from storage")
            failing = False
            if changed:
                log.info("operator caps: %d changed on another node", changed)

    def hold_for_check(self, group_id: str, station_ids: list[str]) -> None:
        """A commissioning check of ``group_id`` steers these chargers through their caps from now on: the
        operator's cap commands on them are refused (:class:`UnderCheck`) until :meth:`end_check`."""
        self._under_check.update(dict.fromkeys(station_ids, group_id))

    def end_check(self, station_ids: list[str]) -> None:
        for sid in station_ids:
            self._under_check.pop(sid, None)

    async def set_cap(self, station_id: str, limit: float, until: float | None, connector: int | None,
                      by: str, *, check: bool = False) -> tuple[OperatorCap, Allowed]:
        """``check``: set by the commissioning check that holds the charger (see :meth:`hold_for_check`)."""
        self._check(station_id, connector, check)
        return await self._put(OperatorCap(station_id, limit, until, self.clock(), by))

    async def put_back(self, cap: OperatorCap) -> tuple[OperatorCap, Allowed]:
        """The commissioning check that held the charger puts the operator's own cap back as it was, set at
        the same moment by the same person (the check's holds were never the operator's)."""
        self._check(cap.station_id, None, True)
        return await self._put(cap)

    async def _put(self, cap: OperatorCap) -> tuple[OperatorCap, Allowed]:
        station_id, limit, until, by = cap.station_id, cap.limit, cap.until, cap.by
        self._changes += 1
        await self.storage.write(stored.save_cap(station_id, limit, until, cap.set_at, by))
        self._changes += 1
        self._caps[station_id] = cap
        if not self.balancer.set_operator_cap(station_id, limit, until):
            return cap, Allowed(None, NOT_LED, None)
        return cap, await self._allowed(station_id)

    async def clear_cap(self, station_id: str, connector: int | None, by: str, *,
                        check: bool = False) -> tuple[OperatorCap | None, Allowed]:
        self._check(station_id, connector, check)
        lifted = self.cap(station_id)
        self._changes += 1
        await self.storage.write(stored.delete_cap(station_id))
        self._changes += 1
        self._caps.pop(station_id, None)
        if not self.balancer.set_operator_cap(station_id, None):
            return lifted, Allowed(None, NOT_LED, None)
        return lifted, await self._allowed(station_id)

    def _check(self, station_id: str, connector: int | None, check: bool = False) -> None:
        group = self._under_check.get(station_id)
        if group is not None and not check:
            raise UnderCheck(f"a commissioning check of group {group!r} holds {station_id} through its cap until "
                             f"it ends (csms commission --group {group}); try again then, your cap before the "
                             "check is put back when it ends")
        charger = self.cfg.charger(station_id)
        if charger is None or self.cfg.group_of(station_id) is None:
            raise NotBalanced(f"station {station_id!r} is in no load-balancing group: the balancer sets it no limit "
                              "that a cap could lower")
        controlled = charger.socket_connector or 1
        if connector not in (None, 0, controlled):
            raise BadArguments("connector", f"the balancer limits {station_id} as a whole, on connector {controlled}: "
                                            f"omit connector (or give 0 or {controlled})")

    async def _allowed(self, station_id: str) -> Allowed:
        decision = await self.balancer.next_decision(station_id, DECISION_WAIT)
        lim = decision.limits.get(station_id) if decision is not None else None
        if lim is None:
            return Allowed(None, "the balancer has not decided yet", None)
        return Allowed(lim.limit, lim.reason, lim.controlled)
