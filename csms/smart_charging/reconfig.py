"""The delivery's side of a reloaded config: channels added, dropped, or given their new settings in place.

A charger whose settings and group did not change keeps its channel and its worker untouched, so its
session, its limit in force and its pending sends go on as if nothing happened. A group's new limits reach
its chargers through the balancer's next decision; only what the charger's set-up installed (its fallback
profile, its socket's availability, whether dynamic limits are wanted at all) needs the set-up run again,
which happens on the live connection, as after a reboot, without dropping it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from csms.config import ChargerConfig, LoadBalancerConfig, SiteConfig, charger_phases
from csms.domain.link import StationLink

from .channel import ChargerChannel
from .exposure import ExposureBook
from .wakes import GroupWakes
from .worker import Worker

log = logging.getLogger("csms.delivery")


#: Charger settings that only the balancer reads (or nobody here): changing them needs no new set-up.
BALANCER_ONLY = frozenset({"max_current", "min_update_interval", "pin", "password", "organisation"})


def needs_setup(old: ChargerConfig, new: ChargerConfig, old_group: LoadBalancerConfig | None,
                new_group: LoadBalancerConfig | None) -> bool:
    """Whether what the set-up installed on the charger must change: its fallback profile (current, phase,
    wiring), the purpose chain, its socket's availability, or whether it is balanced at all."""
    fields = set(type(new).model_fields) - BALANCER_ONLY
    if any(getattr(old, f) != getattr(new, f) for f in fields):
        return True
    def setup_view(g: LoadBalancerConfig | None) -> tuple[object, ...] | None:
        return None if g is None else (g.id, g.active, g.socket_enabled)
    return setup_view(old_group) != setup_view(new_group)


class Reconfigurable:
    """Mixin of :class:`~csms.smart_charging.delivery.Delivery`: :meth:`apply_config`."""

    channels: dict[str, ChargerChannel]
    workers: dict[str, Worker]
    book: ExposureBook
    group_wakes: GroupWakes
    _tasks: set[asyncio.Task]
    #: :meth:`Delivery.attach <csms.smart_charging.delivery.Delivery.attach>`: (re)starts a channel's worker.
    attach: Callable[[StationLink], None]
    #: :meth:`Delivery._wake <csms.smart_charging.delivery.Delivery._wake>`: a channel's worker asks the policy again.
    _wake: Callable[[str], None]

    def apply_config(self, cfg: SiteConfig) -> list[str]:
        """Puts ``cfg``'s chargers and groups in force; returns the chargers set up again on their connection.

        A dropped charger's worker is cancelled (awaited at :meth:`stop` with every other): nothing more is
        sent to it, and what it holds (its fallback profile, a dynamic limit until it expires) stays in force.
        """
        wanted = {c.id: c for c in cfg.chargers}
        for cid in [cid for cid in self.channels if cid not in wanted]:
            worker = self.workers.pop(cid)
            del self.channels[cid]
            worker.halt()
            log.info("%s: removed from the config; nothing more is sent to it", cid)
        again = []
        for c in cfg.chargers:
            group = cfg.group_of(c.id)
            ch = self.channels.get(c.id)
            if ch is None:
                self.channels[c.id] = ChargerChannel(c, group, charger_phases(c))
                self.workers[c.id] = Worker()
                continue
            setup = needs_setup(ch.cfg, c, ch.group, group)
            ch.cfg, ch.group, ch.phases_wired = c, group, charger_phases(c)
            link = self.workers[c.id].link
            if setup and link is not None:
                again.append(c.id)
                self.attach(link)  # the set-up again, on the live connection
        self.book.regroup(self.channels.values())
        self.group_wakes.regroup(g.id for g in cfg.load_balancers)
        for cid in self.workers:
            self._wake(cid)  # a changed group or limit: each worker asks the policy again
        return again
