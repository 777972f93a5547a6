"""The live picture an operator asks for, as plain JSON-ready dicts built from the central system's
:class:`~csms.web.view.SiteView`.

Everything here reads in-memory state only (no I/O), so a status request costs microseconds and never
waits on storage. Each function names exactly the fields it returns: nothing from the config is passed
through wholesale, which is what keeps charger passwords, meter PINs and broker credentials out of every
answer.

Phases: a group's and a meter's currents are per *building* phase ("1".."3"); a charger's ``draw`` is in
its own numbering (L1..L3 as it reports them) and ``draw_by_phase`` maps it to building phases through its
rotation, which is what the group chart adds up.
"""

from __future__ import annotations

import math
from typing import Any

from csms.balancer.model import Decision, circuits_of
from csms.config import LoadBalancerConfig, charger_phases
from csms.domain.reservations import Reservation
from csms.domain.state import StationState

from .view import SiteView


def num(x: float | None, digits: int = 2) -> float | None:
    """A finite float rounded for display, or None (JSON has no NaN or infinity)."""
    if x is None or not math.isfinite(x):
        return None
    return round(x, digits)


def _phases(values: dict[int, float]) -> dict[str, float | None]:
    return {str(p): num(a) for p, a in sorted(values.items())}


def organisations(view: SiteView) -> list[dict[str, Any]]:
    cfg = view.cfg
    return [{
        "id": o.id, "name": o.name, "email": o.email, "authorization": o.authorization,
        "groups": [g.id for g in cfg.load_balancers if g.organisation == o.id],
        "chargers": [c.id for c in cfg.chargers if c.organisation == o.id],
        "meters": [m.serial for m in cfg.meters if m.organisation == o.id],
    } for o in cfg.organisations]


def meter(view: SiteView, serial: str) -> dict[str, Any] | None:
    m = view.cfg.meter(serial)
    if m is None:
        return None
    state = view.meter_states.get(serial)
    reading = view.last_readings.get(serial)
    now = view.clock()
    out: dict[str, Any] = {
        "serial": m.serial, "organisation": m.organisation, "variant": m.variant, "source": m.source,
        "phases": list(m.phases), "stale_after": m.stale_after,
        "status": state.status if state is not None else "unknown",
        "reason": state.reason if state is not None else "no state reported yet",
        "since": state.since if state is not None else None,
        "last_reading": None, "age": None,
        "refused": view.meter_refusals(serial),
    }
    if reading is not None:
        out["last_reading"] = {
            "taken_at": reading.taken_at,
            "current": {str(i + 1): num(a) for i, a in enumerate(reading.current)},
            "voltage": {str(i + 1): num(v, 1) for i, v in enumerate(reading.voltage)},
            "power": num(reading.power, 0),
            "flags": sorted(reading.flags),
        }
        out["age"] = num(max(0.0, now - reading.taken_at))
    return out


def meters(view: SiteView) -> list[dict[str, Any]]:
    return [meter(view, m.serial) for m in view.cfg.meters]  # type: ignore[misc]


def _decision(d: Decision | None) -> dict[str, Any] | None:
    if d is None:
        return None
    return {"at": d.at, "meter_fresh": d.meter_fresh, "budget": _phases(d.budget),
            "available": _phases(d.available), "budget_notes": {str(p): n for p, n in sorted(d.budget_notes.items())}}


def _draw_by_phase(view: SiteView, station_id: str) -> dict[int, float]:
    cfg = view.cfg.charger(station_id)
    st = view.state.stations.get(station_id)
    sample = st.latest_sample() if st is not None else None
    if cfg is None or sample is None:
        return {}
    out: dict[int, float] = {}
    for i, phase in enumerate(charger_phases(cfg)):
        a = sample.current[i]
        if a is not None:
            out[phase] = out.get(phase, 0.0) + a
    return out


def circuits(view: SiteView, g: LoadBalancerConfig, decision: Decision | None) -> list[dict[str, Any]]:
    """Each circuit (sub-board) of the group's tree, parents first: its fuse, what flows through it (its meter, or
    else the sum of its chargers' own meters) and the balancer's budget and plan for it per group phase."""
    out = []
    for c in circuits_of(view.cfg, g):
        cfg = view.cfg.circuit(c.id)
        assert cfg is not None
        load = decision.circuits.get(c.id) if decision is not None else None
        under = list(load.chargers) if load is not None else [
            cid for cid in g.chargers if c.id in view.cfg.circuit_path(view.cfg.circuit_of(cid))]
        current: dict[int, float] = dict.fromkeys(g.phases, 0.0)
        reading = view.last_readings.get(cfg.meter) if cfg.meter is not None else None
        if reading is not None:
            current = {p: reading.current[p - 1] for p in g.phases if reading.current[p - 1] is not None}
        else:
            for cid in under:
                for p, a in _draw_by_phase(view, cid).items():
                    if p in current:
                        current[p] += a
        state = view.meter_states.get(cfg.meter) if cfg.meter else None
        out.append({
            "id": c.id, "name": cfg.name, "parent": c.parent, "max_current": c.max_current, "margin": c.margin,
            "meter": cfg.meter,
            "meter_status": state.status if state else ("none" if cfg.meter is None else "unknown"),
            "chargers": under,
            # What flows through its fuse: its meter when it has one, else only what its chargers report.
            "current": _phases(current), "current_source": "meter" if reading is not None else "chargers",
            "budget": _phases(load.budget) if load else None,
            "planned": _phases(load.planned) if load else None,
            "notes": {str(p): n for p, n in sorted(load.notes.items())} if load else {},
        })
    return out


def group(view: SiteView, g: LoadBalancerConfig) -> dict[str, Any]:
    decision = view.decision(g.id)
    chargers_draw: dict[int, float] = dict.fromkeys(g.phases, 0.0)
    for cid in g.chargers:
        for p, a in _draw_by_phase(view, cid).items():
            if p in chargers_draw:
                chargers_draw[p] += a
    mains = None
    if g.meter is not None and (reading := view.last_readings.get(g.meter)) is not None:
        mains = {p: reading.current[p - 1] for p in g.phases if reading.current[p - 1] is not None}
    meter_state = view.meter_states.get(g.meter) if g.meter else None
    return {
        "id": g.id, "name": g.name, "description": g.description, "organisation": g.organisation,
        "meter": g.meter, "meter_status": meter_state.status if meter_state else ("none" if g.meter is None else "unknown"),
        "phases": list(g.phases), "active": g.active, "socket_enabled": g.socket_enabled,
        "supply_max_current": g.supply_max_current, "max_current_online": g.max_current_online,
        "max_current_offline": g.max_current_offline, "min_current": g.min_current, "margin": g.margin,
        "chargers_in_measurement": g.chargers_in_measurement,
        "chargers": list(g.chargers),
        # What the fuse carries: the mains meter when there is one, else only what the chargers report.
        "phase_current": _phases(mains) if mains is not None else None,
        "chargers_current": _phases(chargers_draw),
        "decision": _decision(decision),
        "circuits": circuits(view, g, decision),
        # What the passive commissioning check concluded from normal operation (see wiring_warning events).
        "wiring_warnings": view.wiring_warnings(g.id),
    }


def groups(view: SiteView) -> list[dict[str, Any]]:
    return [group(view, g) for g in view.cfg.load_balancers]


def _transaction(station_id: str, tx) -> dict[str, Any]:
    return {"station_id": station_id, "transaction_id": tx.transaction_id, "connector_id": tx.connector_id,
            "id_token": tx.id_token, "started_at": tx.started_at, "meter_start_wh": tx.meter_start_wh}


def _maintenance(st: StationState | None, kind: str) -> dict[str, Any] | None:
    """The station's latest firmware or log status as it worded it, when (epoch s) and for which request."""
    m = st.maintenance.get(kind) if st is not None else None
    return None if m is None else {"status": m.status, "at": m.at, "request_id": m.request_id}


def reservation(r: Reservation) -> dict[str, Any]:
    """A reservation as the operator view shows it (``connector`` 0: any connector of the station)."""
    return {"id": r.id, "station_id": r.station_id, "connector": r.connector, "id_token": r.id_token,
            "parent": r.parent, "expires_at": r.expires_at, "state": r.state.value, "created_by": r.created_by,
            "created_at": r.created_at, "transaction_id": r.transaction_id}


def charger(view: SiteView, station_id: str) -> dict[str, Any] | None:
    c = view.cfg.charger(station_id)
    if c is None:
        return None
    g = view.cfg.group_of(station_id)
    st: StationState | None = view.state.stations.get(station_id)
    ch = view.channels.get(station_id)
    decision = view.decision(g.id) if g is not None else None
    lim = decision.limits.get(station_id) if decision is not None else None
    sample = st.latest_sample() if st is not None else None
    return {
        "id": c.id, "organisation": c.organisation, "group": g.id if g else None,
        "phases": c.phases, "phase_rotation": c.phase_rotation, "phases_wired": list(charger_phases(c)),
        "max_current": c.max_current, "offline_current": c.offline_current,
        "connected": bool(st and st.connected),
        "version": str(st.version) if st and st.version else None,
        "vendor": st.boot.vendor if st and st.boot else None,
        "model": st.boot.model if st and st.boot else None,
        "firmware_version": st.boot.firmware_version if st and st.boot else None,
        "last_seen": st.last_seen if st and st.last_seen else None,
        "connected_at": st.connected_at if st else None,
        "disconnected_at": st.disconnected_at if st else None,
        "connectors": [{"id": k.connector_id, "status": k.status, "error_code": k.error_code, "at": k.updated_at}
                       for k in sorted(st.connectors.values(), key=lambda k: k.connector_id)] if st else [],
        "control": ch.control.value if ch else "uncontrolled",
        "control_reason": ch.control_reason if ch else "",
        "fallback_installed": bool(ch and ch.fallback_installed),
        "limit_in_force": num(ch.in_force) if ch else None,
        "limit": num(lim.limit) if lim else None,
        "limit_phases": list(lim.phases) if lim else [],
        "limit_controlled": lim.controlled if lim else None,
        "counted": num(lim.counted) if lim else None,
        "reason": lim.reason if lim else ("not in any load-balancing group" if g is None else "no decision yet"),
        # The operator's cap on its limit ({"limit", "until", "setAt", "by"}), inside what the balancer allows.
        "operator_cap": cap.as_json() if (cap := view.operator_cap(station_id)) is not None else None,
        "explain": view.explain(station_id),
        "draw": [num(a) for a in sample.current] if sample else [None, None, None],
        "draw_at": sample.taken_at if sample else None,
        "offered": num(sample.offered) if sample else None,
        "draw_by_phase": _phases(_draw_by_phase(view, station_id)),
        "profiles": {"sent": ch.sent, "accepted": ch.accepted, "rejected": ch.rejected} if ch else None,
        "transactions": [_transaction(station_id, tx) for tx in st.transactions.values()] if st else [],
        # 1.6 / 2.0.1 FirmwareStatusNotification; 1.6 DiagnosticsStatusNotification / 2.0.1 LogStatusNotification.
        "firmware_status": _maintenance(st, "firmware"),
        "log_status": _maintenance(st, "log"),
        "reservations": [reservation(r) for r in view.reservations(station_id)] if view.reservations else [],
    }


def chargers(view: SiteView) -> list[dict[str, Any]]:
    return [charger(view, c.id) for c in view.cfg.chargers]  # type: ignore[misc]


def running_transactions(view: SiteView) -> list[dict[str, Any]]:
    return [_transaction(sid, tx) for sid, st in sorted(view.state.stations.items()) for tx in st.transactions.values()]


def site(view: SiteView) -> dict[str, Any]:
    """Everything the dashboard refreshes each second, in one answer."""
    stations = view.state.stations.values()
    return {
        "at": view.clock(),
        # Which config is in force ({"version", "sha256", "loaded_at", ...}) and the latest refused reload.
        "config": view.config_status() if view.config_status is not None else None,
        "node": view.node(),
        "connected_stations": sum(1 for s in stations if s.connected),
        "organisations": organisations(view),
        "groups": groups(view),
        "meters": meters(view),
        "chargers": chargers(view),
        "transactions": running_transactions(view),
    }
