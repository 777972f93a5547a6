"""What only the whole file can tell: references between sections, uniqueness, limits that must agree.

Runs after pydantic has checked each section's shape (and, on a file that failed that, on its valid parts), so
an operator sees every problem at once; :func:`config_warnings` names settings worth a second look.
"""

from __future__ import annotations

import re

from csms.domain.tokens import parent_problem

from .circuits import check_circuits, circuit_warnings
from .errors import Problem
from .site import SiteConfig, charger_phases

#: OCPP 2.0.1 passwordString characters (A00.FR.205); 1.6 AuthorizationKey hex digits are a subset.
PASSWORD_RE = re.compile(r"^[A-Za-z0-9*\-_=:+|@.]{16,40}$")


def _duplicates(items: list, key: str, section: str) -> list[Problem]:
    seen: dict[str, int] = {}
    out = []
    for i, item in enumerate(items):
        if item is None:
            continue
        value = getattr(item, key)
        if value in seen:
            out.append(Problem(f"{section}.{i}.{key}", f"duplicate {key} {value!r} (first at {section}.{seen[value]})"))
        else:
            seen[value] = i
    return out


def cross_check(cfg: SiteConfig, invalid_ids: frozenset[str] = frozenset()) -> list[Problem]:
    """Checks that need the whole file: references, uniqueness, limits that must agree with each other.

    ``invalid_ids`` are ids of items that failed their own validation: references to them are not
    reported again as unknown.
    """
    problems: list[Problem] = []
    problems += _duplicates(cfg.organisations, "id", "organisations")
    problems += _duplicates(cfg.meters, "serial", "meters")
    problems += _duplicates(cfg.chargers, "id", "chargers")
    problems += _duplicates(cfg.load_balancers, "id", "load_balancers")
    problems += _duplicates(cfg.circuits, "id", "circuits")
    orgs = {o.id for o in cfg.organisations if o is not None}
    meters = {m.serial: m for m in cfg.meters if m is not None}
    chargers = {c.id: c for c in cfg.chargers if c is not None}
    srv = cfg.server

    if srv.security_profile in (2, 3) and not (srv.tls_cert and srv.tls_key):
        problems.append(Problem("server.tls_cert", f"security_profile {srv.security_profile} needs tls_cert and tls_key"))
    if srv.security_profile == 3 and not srv.tls_ca:
        problems.append(Problem("server.tls_ca", "security_profile 3 needs tls_ca, the CA that signed the chargers' certificates"))

    def ref(path: str, org: str) -> None:
        if org not in orgs and org not in invalid_ids:
            problems.append(Problem(path, f"unknown organisation {org!r}; add it under [[organisations]]"))

    listed = [(t.organisation, t.token) for t in cfg.id_tokens if t is not None]
    seen_tokens: dict[tuple[str, str], int] = {}
    for i, t in enumerate(cfg.id_tokens):
        if t is None:
            continue
        ref(f"id_tokens.{i}.organisation", t.organisation)
        if (t.organisation, t.token) in seen_tokens:
            problems.append(Problem(f"id_tokens.{i}.token", f"duplicate token {t.token!r} of organisation "
                                    f"{t.organisation!r} (first at id_tokens.{seen_tokens[t.organisation, t.token]})"))
        else:
            seen_tokens[t.organisation, t.token] = i
        why = parent_problem(t.organisation, t.parent, listed)
        if why is not None:
            problems.append(Problem(f"id_tokens.{i}.parent", why))
    for i, m in enumerate(cfg.meters):
        if m is None:
            continue
        ref(f"meters.{i}.organisation", m.organisation)
        if m.source == "mqtt" and cfg.mqtt is None:
            problems.append(Problem(f"meters.{i}.source", 'source = "mqtt" needs an [mqtt] section naming the broker'))
    if cfg.gateway.mode == "mqtt" and cfg.mqtt is None:
        problems.append(Problem("gateway.mode", 'mode = "mqtt" needs an [mqtt] section naming the broker'))
    for i, c in enumerate(cfg.chargers):
        if c is None:
            continue
        ref(f"chargers.{i}.organisation", c.organisation)
        if srv.security_profile in (1, 2):
            if c.password is None:
                problems.append(Problem(f"chargers.{i}.password", f"security_profile {srv.security_profile} needs a basic-auth password"))
            elif not PASSWORD_RE.match(c.password):
                problems.append(Problem(
                    f"chargers.{i}.password",
                    "OCPP basic-auth passwords are 16-40 characters of letters, digits and *-_=:+|@. "
                    "(generate one with: python -c \"import secrets; print(secrets.token_hex(16))\")",
                ))
        if c.offline_current > c.max_current:
            problems.append(Problem(f"chargers.{i}.offline_current", f"{c.offline_current} A is above max_current {c.max_current} A"))

    group_of: dict[str, str] = {}
    for i, g in enumerate(cfg.load_balancers):
        if g is None:
            continue
        p = f"load_balancers.{i}"
        ref(f"{p}.organisation", g.organisation)
        meter = None
        if g.meter is not None:
            meter = meters.get(g.meter)
            if meter is None and g.meter not in invalid_ids:
                problems.append(Problem(f"{p}.meter", f"unknown meter {g.meter!r}; add it under [[meters]] or omit meter for static balancing"))
        for j, cid in enumerate(g.chargers):
            if cid not in chargers:
                if cid in invalid_ids:
                    continue
                problems.append(Problem(f"{p}.chargers.{j}", f"unknown charger {cid!r}; add it under [[chargers]]"))
            elif cid in group_of:
                problems.append(Problem(f"{p}.chargers.{j}", f"charger {cid!r} is already in group {group_of[cid]!r}; a charger belongs to one group"))
            else:
                group_of[cid] = g.id
        if len(set(g.chargers)) != len(g.chargers):
            problems.append(Problem(f"{p}.chargers", "a charger is listed twice"))
        if g.min_current > g.max_current_online:
            problems.append(Problem(f"{p}.min_current", f"{g.min_current} A is above max_current_online {g.max_current_online} A"))
        if g.max_current_offline > g.max_current_online:
            problems.append(Problem(f"{p}.max_current_offline", f"{g.max_current_offline} A is above max_current_online {g.max_current_online} A"))
        if meter is not None:
            extra = sorted(set(g.phases) - set(meter.phases))
            if extra:
                problems.append(Problem(f"{p}.phases", f"phases {extra} are not measured by meter {meter.serial} (its phases are {meter.phases}); a one-phase site uses [1]"))
        for j, cid in enumerate(g.chargers):
            c = chargers.get(cid)
            if c is None:
                continue
            if c.max_current < g.min_current:
                problems.append(Problem(f"{p}.chargers.{j}", f"charger {cid!r} max_current {c.max_current} A is below the group's min_current {g.min_current} A"))
            if c.offline_phase not in g.phases:
                problems.append(Problem(f"{p}.chargers.{j}", f"charger {cid!r} offline_phase {c.offline_phase} is not among the group's phases {g.phases}"))
            if c.phases == 1 and charger_phases(c)[0] not in g.phases:
                problems.append(Problem(f"{p}.chargers.{j}", f"one-phase charger {cid!r} lands on building phase {charger_phases(c)[0]}, which the group does not include"))
    problems += check_circuits(cfg, invalid_ids)
    return problems


def config_warnings(cfg: SiteConfig) -> list[Problem]:
    """Settings that are legitimate but worth a second look; ``check-config`` prints them, ``serve`` logs them."""
    warnings: list[Problem] = []
    for i, g in enumerate(cfg.load_balancers):
        if g.max_current_online > g.supply_max_current:
            warnings.append(Problem(
                f"load_balancers.{i}.max_current_online",
                f"{g.max_current_online} A is above supply_max_current {g.supply_max_current} A (the main fuse): "
                "the group may draw more than the fuse only while the building exports (solar) or when it is a "
                "sub-board rated above it; the import through the fuse is still kept within supply_max_current"))
        warnings += _fallback_warnings(cfg, g, f"load_balancers.{i}")
    warnings += circuit_warnings(cfg)
    return warnings


def _fallback_warnings(cfg: SiteConfig, g, path: str) -> list[Problem]:
    """The chargers' offline fallbacks hold when the central system or the network is gone, and nothing then
    shares the fuse: on each phase they must add up to no more than it. A three-phase charger is counted on
    every phase (whether it can take its fallback on one depends on its version and capabilities)."""
    warnings: list[Problem] = []
    chargers = [c for c in (cfg.charger(cid) for cid in g.chargers) if c is not None]
    for phase in g.phases:
        on = [c for c in chargers if c.offline_current > 0 and phase in charger_phases(c)]
        total = sum(c.offline_current for c in on)
        if total > g.supply_max_current:
            each = int(g.supply_max_current / len(on))
            named = ", ".join(f"{c.id} {c.offline_current:g} A" for c in on)
            warnings.append(Problem(path, f"the chargers' offline_current add up to {total:g} A on L{phase} ({named}), "
                                          f"above supply_max_current {g.supply_max_current:g} A: with the central "
                                          "system or the network gone, every car charging overloads the fuse; "
                                          f"lower them to add up to at most {g.supply_max_current:g} A "
                                          f"(e.g. {each} A each)"))
    return warnings
