"""The controller's log line per decision: INFO naming the chargers whose limit changed (with the reason), DEBUG
when nothing changed, so that "why does CP0003 get 7 A?" is answered by the log as well as by the API."""

from __future__ import annotations

import logging

from .model import Decision

log = logging.getLogger("csms.balancer.controller")

#: How many changed chargers one INFO line names before it says "and N more".
LOG_CHANGES = 20


def log_decision(decision: Decision, previous: Decision | None) -> None:
    """Logs ``decision``: the chargers whose limit or control changed since ``previous``."""
    old = previous.limits if previous is not None else {}
    changed = [(cid, lim) for cid, lim in decision.limits.items()
               if (prev := old.get(cid)) is None or prev.limit != lim.limit or prev.controlled != lim.controlled]
    budget = ", ".join(f"L{p} {a:.1f} A" for p, a in decision.budget.items())
    fresh = "meter fresh" if decision.meter_fresh else "no fresh meter reading"
    if not changed:
        log.debug("group %s: limits unchanged (budget %s, %s)", decision.group_id, budget, fresh)
        return
    parts = [f"{cid} {lim.limit:.1f} A on {'+'.join(f'L{p}' for p in lim.phases) or '-'} ({lim.reason})"
             for cid, lim in changed[:LOG_CHANGES]]
    if len(changed) > LOG_CHANGES:
        parts.append(f"and {len(changed) - LOG_CHANGES} more")
    log.info("group %s: budget %s, %s; %s", decision.group_id, budget, fresh, "; ".join(parts))
