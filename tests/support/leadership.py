"""Watching lease managers in one process: every callback in the order it came, and a sampler of who leads.

Every manager of a test runs in one process, so their monotonic clocks are the same clock and their callbacks
come one after another on one loop: the order they were recorded in is the order they happened.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from csms.cluster.leadership import LeaseManager


@dataclass
class Log:
    """Every callback of every manager, with the monotonic time it came."""

    groups: Sequence[str]
    ttl: float
    gained: list[tuple[float, str, str, int]] = field(default_factory=list)
    lost: list[tuple[float, str, str, str]] = field(default_factory=list)
    #: Both, in the order they came: ("gained", node, group, token) or ("lost", node, group, reason).
    events: list[tuple[str, str, str, int | str]] = field(default_factory=list)

    def manager(self, url: str, node: str, groups: Sequence[str] | None = None, **kwargs) -> LeaseManager:
        kwargs.setdefault("ttl", self.ttl)
        m = LeaseManager(url, node, on_gained=lambda g, t: self._gained(node, g, t),
                         on_lost=lambda g, r: self._lost(node, g, r), **kwargs)
        m.set_groups(self.groups if groups is None else groups)
        return m

    def _gained(self, node: str, group: str, token: int) -> None:
        self.gained.append((time.monotonic(), node, group, token))
        self.events.append(("gained", node, group, token))

    def _lost(self, node: str, group: str, reason: str) -> None:
        self.lost.append((time.monotonic(), node, group, reason))
        self.events.append(("lost", node, group, reason))

    def tokens_only_go_up(self) -> None:
        for g in self.groups:
            tokens = [t for _, _, group, t in sorted(self.gained) if group == g]
            assert tokens == sorted(set(tokens)), f"{g}: tokens {tokens} do not strictly increase"

    def one_leader_at_a_time(self) -> None:
        """Replays the callbacks: a group is gained only while nobody leads it, and lost only by its leader."""
        leader: dict[str, str] = {}
        for i, (kind, node, group, _) in enumerate(self.events):
            if kind == "gained":
                assert group not in leader, f"event {i}: {node} gained {group} while {leader[group]} led it"
                leader[group] = node
            else:
                assert leader.pop(group, None) == node, f"event {i}: {node} lost {group}, which it did not lead"

    def reasons(self, node: str) -> list[str]:
        return [reason for _, n, _, reason in self.lost if n == node]


async def until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Waits for ``condition``; returns when it became true (monotonic)."""
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"not {what} within {timeout:g} s") from None
    return time.monotonic()


class Sampler:
    """Checks, every 2 ms while it runs, that no group is led by two managers at once (by
    :meth:`LeaseManager.token`, what a controller asks before each command)."""

    def __init__(self, groups: Sequence[str], *managers: LeaseManager):
        self.groups = groups
        self.managers = list(managers)
        self.samples = 0
        self.overlaps: list[str] = []

    async def run(self) -> None:
        while True:
            for g in self.groups:
                leaders = [m.node for m in self.managers if m.token(g) is not None]
                if len(leaders) > 1:
                    self.overlaps.append(f"{g}: {leaders}")
            self.samples += 1
            await asyncio.sleep(0.002)

    async def __aenter__(self) -> Sampler:
        self._task = asyncio.create_task(self.run())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        assert not self.overlaps, f"two leaders at once: {self.overlaps[:5]}"
