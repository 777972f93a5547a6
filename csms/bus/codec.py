"""What gateways tell controllers, as JSON: a station's full state, the event that changed it, its link; node records.

A station message carries the whole :class:`~csms.domain.state.StationState` after the event *and* the event:
the state is the truth (a controller that joins late, or missed messages while the broker was away, takes it as
is), the event is what a controller's mirror replays so that its listeners hear the same events the gateway's
did (:mod:`csms.bus.mirror`). ``link`` is what the delivery reads of the station's session besides its
commands (ready, boots, unsupported), which no state event carries.

Pure: no I/O, no MQTT. Every ``decode_*`` raises only :class:`~csms.bus.wire.BadMessage`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from csms.domain.state import (
    BootInfo, ConnectorState, Event, MaintenanceStatus, MeterSampled, PhaseSample, StationBooted, StationConnected,
    StationDisconnected, StationState, StatusChanged, Transaction, TransactionEnded, TransactionStarted, Version,
)

from .wire import WIRE_VERSION, BadMessage, Fields, dump, load


@dataclass(frozen=True)
class LinkInfo:
    """What a controller's :class:`~csms.bus.remote.RemoteLink` mirrors of the gateway's live station session."""

    ready: bool = False
    ready_reason: str = ""
    #: Accepted boots on this connection; an increase is a reboot (the delivery sets the station up again).
    boots: int = 0
    unsupported: frozenset[str] = frozenset()


@dataclass(frozen=True)
class StationMessage:
    """One message on ``<prefix>/station/<station_id>``."""

    node: str
    #: A random id of the gateway process's run: ``seq`` counts per station within one run.
    run: str
    seq: int
    state: StationState
    link: LinkInfo = field(default_factory=LinkInfo)
    event: Event | None = None


@dataclass(frozen=True)
class NodeRecord:
    """A process's retained record on ``<prefix>/node/<node>``; its Last Will is the same with status offline."""

    node: str
    role: str
    status: str  # "online" | "offline"
    stations: int = 0
    groups: tuple[str, ...] = ()
    at: float = 0.0
    #: The process's run (see :attr:`StationMessage.run`): a gateway restarted under the same node name is a new
    #: run, and the stations its old run held are gone.
    run: str = ""


# -- the domain's values ------------------------------------------------------------------------------------


def boot_json(b: BootInfo) -> dict[str, Any]:
    return {"vendor": b.vendor, "model": b.model, "serial_number": b.serial_number,
            "firmware_version": b.firmware_version}


def boot_of(f: Fields) -> BootInfo:
    return BootInfo(f.str("vendor"), f.str("model"), f.opt_str("serial_number"), f.opt_str("firmware_version"))


def tx_json(t: Transaction) -> dict[str, Any]:
    return {"transaction_id": t.transaction_id, "connector_id": t.connector_id, "id_token": t.id_token,
            "started_at": t.started_at, "meter_start_wh": t.meter_start_wh, "stopped_at": t.stopped_at,
            "meter_stop_wh": t.meter_stop_wh, "stop_reason": t.stop_reason}


def tx_of(f: Fields) -> Transaction:
    return Transaction(f.str("transaction_id"), f.int("connector_id"), f.opt_str("id_token"), f.num("started_at"),
                       f.opt_num("meter_start_wh"), f.opt_num("stopped_at"), f.opt_num("meter_stop_wh"),
                       f.opt_str("stop_reason"))


def sample_json(s: PhaseSample) -> dict[str, Any]:
    return {"taken_at": s.taken_at, "current": list(s.current), "voltage": list(s.voltage), "energy_wh": s.energy_wh,
            "offered": s.offered}


def sample_of(f: Fields) -> PhaseSample:
    return PhaseSample(f.num("taken_at"), f.num_tuple3("current"), f.num_tuple3("voltage"), f.opt_num("energy_wh"),
                       f.opt_num("offered"))


def state_json(st: StationState) -> dict[str, Any]:
    return {
        "station_id": st.station_id,
        "version": None if st.version is None else st.version.value,
        "connected": st.connected,
        "connected_at": st.connected_at,
        "disconnected_at": st.disconnected_at,
        "boot": None if st.boot is None else boot_json(st.boot),
        "last_seen": st.last_seen,
        "connectors": {str(cid): {"status": c.status, "error_code": c.error_code, "updated_at": c.updated_at}
                       for cid, c in st.connectors.items()},
        "transactions": {str(cid): tx_json(t) for cid, t in st.transactions.items()},
        "samples": {str(cid): sample_json(s) for cid, s in st.samples.items()},
        "maintenance": {kind: {"status": m.status, "at": m.at, "request_id": m.request_id}
                        for kind, m in st.maintenance.items()},
    }


def state_of(f: Fields) -> StationState:
    version = None if f.opt_str("version") is None else f.choice("version", Version)
    boot = f.opt_obj("boot")
    return StationState(
        station_id=f.str("station_id"),
        version=version,
        connected=f.bool("connected"),
        connected_at=f.opt_num("connected_at"),
        disconnected_at=f.opt_num("disconnected_at"),
        boot=None if boot is None else boot_of(boot),
        last_seen=f.num("last_seen"),
        connectors=f.by_int_key("connectors", lambda c, cid: ConnectorState(cid, c.str("status"),
                                                                             c.opt_str("error_code"),
                                                                             c.num("updated_at"))),
        transactions=f.by_int_key("transactions", lambda t, cid: _keyed_tx(t, cid)),
        samples=f.by_int_key("samples", lambda s, cid: sample_of(s)),
        maintenance=f.by_str_key("maintenance", lambda m, kind: MaintenanceStatus(m.str("status"), m.num("at"),
                                                                                  m.opt_int("request_id"))),
    )


def _keyed_tx(f: Fields, cid: int) -> Transaction:
    tx = tx_of(f)
    if tx.connector_id != cid:
        raise BadMessage("bad_field", f"{f.path}.connector_id: {tx.connector_id} under key {cid}")
    return tx


# -- events ---------------------------------------------------------------------------------------------------

#: Each event type by its wire name; the names are the classes' own.
EVENT_TYPES: dict[str, type[Event]] = {t.__name__: t for t in (
    StationConnected, StationDisconnected, StationBooted, StatusChanged, TransactionStarted, TransactionEnded,
    MeterSampled)}


def event_json(e: Event) -> dict[str, Any]:
    out: dict[str, Any] = {"type": type(e).__name__, "station_id": e.station_id, "at": e.at}
    if isinstance(e, StationConnected):
        out["version"] = e.version.value
    elif isinstance(e, StationBooted):
        out["boot"] = boot_json(e.boot)
    elif isinstance(e, StatusChanged):
        out.update(connector_id=e.connector_id, status=e.status, error_code=e.error_code)
    elif isinstance(e, (TransactionStarted, TransactionEnded)):
        out["transaction"] = tx_json(e.transaction)
    elif isinstance(e, MeterSampled):
        out.update(connector_id=e.connector_id, sample=sample_json(e.sample))
    elif not isinstance(e, StationDisconnected):
        raise TypeError(f"no wire form for event {type(e).__name__}")
    return out


def event_of(f: Fields) -> Event:
    kind = f.str("type")
    sid, at = f.str("station_id"), f.num("at")
    if kind == "StationConnected":
        return StationConnected(sid, at, f.choice("version", Version))
    if kind == "StationDisconnected":
        return StationDisconnected(sid, at)
    if kind == "StationBooted":
        return StationBooted(sid, at, boot_of(f.obj("boot")))
    if kind == "StatusChanged":
        return StatusChanged(sid, at, f.int("connector_id"), f.str("status"), f.opt_str("error_code"))
    if kind == "TransactionStarted":
        return TransactionStarted(sid, at, tx_of(f.obj("transaction")))
    if kind == "TransactionEnded":
        return TransactionEnded(sid, at, tx_of(f.obj("transaction")))
    if kind == "MeterSampled":
        return MeterSampled(sid, at, f.int("connector_id"), sample_of(f.obj("sample")))
    raise BadMessage("bad_field", f"{f.path + '.' if f.path else ''}type: unknown event type {kind!r}")


# -- station messages ---------------------------------------------------------------------------------------


def link_json(link: LinkInfo) -> dict[str, Any]:
    return {"ready": link.ready, "ready_reason": link.ready_reason, "boots": link.boots,
            "unsupported": sorted(link.unsupported)}


def link_of(f: Fields) -> LinkInfo:
    return LinkInfo(f.bool("ready"), f.str("ready_reason"), f.int("boots"), frozenset(f.strs("unsupported")))


def encode_station(msg: StationMessage) -> bytes:
    return dump({"v": WIRE_VERSION, "node": msg.node, "run": msg.run, "seq": msg.seq, "state": state_json(msg.state),
                 "link": link_json(msg.link), "event": None if msg.event is None else event_json(msg.event)})


def decode_station(payload: bytes | str, station_id: str) -> StationMessage:
    """The message on ``<prefix>/station/<station_id>``; its state and event must name that station."""
    f = load(payload)
    state = state_of(f.obj("state"))
    ev = f.opt_obj("event")
    event = None if ev is None else event_of(ev)
    for where, named in (("state.station_id", state.station_id),
                         ("event.station_id", None if event is None else event.station_id)):
        if named is not None and named != station_id:
            raise BadMessage("wrong_station", f"{where}: {named!r} on the topic of {station_id!r}")
    return StationMessage(f.str("node"), f.str("run"), f.int("seq"), state, link_of(f.obj("link")), event)


# -- node records -------------------------------------------------------------------------------------------


def encode_node(rec: NodeRecord) -> bytes:
    return dump({"v": WIRE_VERSION, "node": rec.node, "role": rec.role, "status": rec.status,
                 "stations": rec.stations, "groups": list(rec.groups), "at": rec.at, "run": rec.run})


def decode_node(payload: bytes | str, node: str) -> NodeRecord:
    f = load(payload)
    rec = NodeRecord(f.str("node"), f.str("role"), f.str("status"), f.int("stations"), tuple(f.strs("groups")),
                     f.num("at"), f.str("run"))
    if rec.node != node:
        raise BadMessage("wrong_node", f"node: {rec.node!r} on the topic of {node!r}")
    if rec.status not in ("online", "offline"):
        raise BadMessage("bad_field", f"status: {rec.status!r} is not online or offline")
    return rec
