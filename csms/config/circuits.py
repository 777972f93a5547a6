"""Checks of the ``[[circuits]]`` tree: references, cycles, and the rule that one tree belongs to one group.

Why one group per tree: a circuit's fuse is shared by everything under it, so every charger under it must be
allocated in the same pass (max-min fair across the tree, no node over its limit). The balancer runs one pass
per load-balancing group, under the group's main fuse (``supply_max_current`` and its meter): a tree is the
inside of one group. Two groups under one sub-board would each think they had its whole capacity.
"""

from __future__ import annotations

from .errors import Problem
from .site import SiteConfig


def _cycle(cfg: SiteConfig, start: str) -> list[str] | None:
    """The ids of the parent cycle ``start`` is on (start first), or None."""
    seen: list[str] = []
    node = cfg.circuit(start)
    while node is not None and node.parent is not None:
        if node.id in seen:
            break
        seen.append(node.id)
        node = cfg.circuit(node.parent)
    if node is not None and node.id in seen and node.id == start:
        return seen
    return None


def check_circuits(cfg: SiteConfig, invalid_ids: frozenset[str] = frozenset()) -> list[Problem]:
    """Problems of the circuit tree; ``invalid_ids`` are items that failed their own validation."""
    problems: list[Problem] = []
    circuits = {c.id: c for c in cfg.circuits if c is not None}
    meters = {m.serial for m in cfg.meters if m is not None}
    chargers = {c.id for c in cfg.chargers if c is not None}
    groups = {g.id: g for g in cfg.load_balancers if g is not None}
    group_of = {cid: g.id for g in groups.values() for cid in g.chargers}
    on_circuit: dict[str, str] = {}
    cyclic: set[str] = set()
    for i, c in enumerate(cfg.circuits):
        if c is None:
            continue
        p = f"circuits.{i}"
        if c.id in groups:
            problems.append(Problem(f"{p}.id", f"{c.id!r} is also a load-balancing group's id; give the circuit its "
                                    "own id, so that the status and the logs can tell them apart"))
        if c.parent is not None:
            if c.parent == c.id:
                problems.append(Problem(f"{p}.parent", "a circuit cannot be its own parent; omit parent for a circuit "
                                        "directly under the main fuse"))
                cyclic.add(c.id)
            elif c.parent not in circuits and c.parent not in invalid_ids:
                problems.append(Problem(f"{p}.parent", f"unknown circuit {c.parent!r}; add it under [[circuits]] or "
                                        "omit parent for a circuit directly under the main fuse"))
            elif c.id not in cyclic and (loop := _cycle(cfg, c.id)) is not None:
                cyclic.update(loop)
                problems.append(Problem(f"{p}.parent", "circuits " + " -> ".join(loop + [loop[0]]) + " form a cycle; "
                                        "every parent chain must end at a circuit without parent (under the main fuse)"))
        if c.meter is not None:
            if c.meter not in meters and c.meter not in invalid_ids:
                problems.append(Problem(f"{p}.meter", f"unknown meter {c.meter!r}; add it under [[meters]] or omit "
                                        "meter (the circuit is then bounded by the limits of its chargers)"))
            if c.max_current_offline is None:
                problems.append(Problem(f"{p}.max_current_offline", "a circuit with a meter needs "
                                        "max_current_offline: what its chargers may draw together while the meter is "
                                        "stale (its other load is unknown then)"))
        if c.max_current_offline is not None and c.max_current_offline > c.max_current:
            problems.append(Problem(f"{p}.max_current_offline",
                                    f"{c.max_current_offline} A is above max_current {c.max_current} A"))
        for j, cid in enumerate(c.chargers):
            if cid not in chargers:
                if cid not in invalid_ids:
                    problems.append(Problem(f"{p}.chargers.{j}", f"unknown charger {cid!r}; add it under [[chargers]]"))
            elif cid in on_circuit:
                problems.append(Problem(f"{p}.chargers.{j}", f"charger {cid!r} is already on circuit "
                                        f"{on_circuit[cid]!r}; a charger is wired on one circuit"))
            elif cid not in group_of:
                problems.append(Problem(f"{p}.chargers.{j}", f"charger {cid!r} is in no load-balancing group; add it "
                                        "to the group under whose main fuse this circuit hangs"))
            else:
                on_circuit[cid] = c.id
    for i, g in enumerate(cfg.load_balancers):
        if g is not None and g.circuit is not None and g.circuit not in circuits and g.circuit not in invalid_ids:
            problems.append(Problem(f"load_balancers.{i}.circuit", f"unknown circuit {g.circuit!r}; add it under "
                                    "[[circuits]] or omit circuit for a group directly under its main fuse"))
    if cyclic:
        return problems  # roots are undefined on a cycle: the rest would only repeat it
    problems += _one_group_per_tree(cfg, circuits, groups, group_of, on_circuit)
    return problems


def _root(cfg: SiteConfig, circuit_id: str) -> str:
    path = cfg.circuit_path(circuit_id)
    return path[-1] if path else circuit_id


def _one_group_per_tree(cfg: SiteConfig, circuits: dict, groups: dict, group_of: dict[str, str],
                        on_circuit: dict[str, str]) -> list[Problem]:
    problems: list[Problem] = []
    owner: dict[str, tuple[str, str]] = {}  # tree root -> (group id, what tied it to the group)

    def claim(root: str, gid: str, what: str, path: str) -> None:
        held = owner.setdefault(root, (gid, what))
        if held[0] != gid:
            problems.append(Problem(path, f"{what} puts group {gid!r} under circuit tree {root!r}, which already "
                                    f"holds group {held[0]!r} ({held[1]}); every charger under one tree is balanced "
                                    "in one pass with one group's main fuse: put these chargers in one group"))

    for i, g in enumerate(cfg.load_balancers):
        if g is not None and g.circuit in circuits:
            claim(_root(cfg, g.circuit), g.id, f"circuit {g.circuit!r}", f"load_balancers.{i}.circuit")
    for i, c in enumerate(cfg.circuits):
        if c is None:
            continue
        for j, cid in enumerate(c.chargers):
            if on_circuit.get(cid) != c.id:
                continue
            gid = group_of[cid]
            claim(_root(cfg, c.id), gid, f"charger {cid!r}", f"circuits.{i}.chargers.{j}")
            g = groups[gid]
            if g.circuit is not None and g.circuit in circuits and g.circuit not in cfg.circuit_path(c.id):
                problems.append(Problem(f"circuits.{i}.chargers.{j}", f"charger {cid!r} of group {gid!r} is on "
                                        f"circuit {c.id!r}, which is not under the group's circuit {g.circuit!r}; "
                                        "list it on a circuit below that one, or change the group's circuit"))
    return problems


def circuit_warnings(cfg: SiteConfig) -> list[Problem]:
    """Circuit settings that are legitimate but worth a second look."""
    warnings: list[Problem] = []
    by_root_group: dict[str, float] = {}
    for g in cfg.load_balancers:
        for cid in g.chargers:
            path = cfg.circuit_path(cfg.circuit_of(cid))
            if path:
                by_root_group[path[-1]] = g.supply_max_current
        if g.circuit is not None and (path := cfg.circuit_path(g.circuit)):
            by_root_group[path[-1]] = g.supply_max_current
    min_current = {cid: g.min_current for g in cfg.load_balancers for cid in g.chargers}
    for i, c in enumerate(cfg.circuits):
        parent = cfg.circuit(c.parent) if c.parent is not None else None
        if parent is not None and c.max_current > parent.max_current:
            warnings.append(Problem(f"circuits.{i}.max_current", f"{c.max_current} A is above its parent "
                                    f"{parent.id!r} ({parent.max_current} A): the parent's fuse binds first"))
        fuse = by_root_group.get(c.id) if c.parent is None else None
        if fuse is not None and c.max_current > fuse:
            warnings.append(Problem(f"circuits.{i}.max_current", f"{c.max_current} A is above the main fuse "
                                    f"(supply_max_current {fuse} A) of its group: the main fuse binds first"))
        mins = [min_current[cid] for cid in c.chargers if cid in min_current]
        if mins and c.max_current - c.margin < max(mins):
            warnings.append(Problem(f"circuits.{i}.max_current", f"{c.max_current} A less the margin {c.margin} A "
                                    f"is below min_current {float(max(mins))} A: no charger on it can charge"))
    return warnings
