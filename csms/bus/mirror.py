"""A controller's copy of the stations the gateways hold, kept by replaying what they publish.

Each station message (:class:`~csms.bus.codec.StationMessage`) carries the station's full state and the event
that produced it. The mirror makes its :class:`~csms.domain.state.SiteState` equal to that state *through
SiteState's own methods*, so that its listeners (the balancer, the delivery) hear events exactly as they would
beside the real OCPP handlers:

- the next message of a stream (same gateway run, ``seq`` one more, or 1: its first) replays its event;
- anything else (the first message, a gap after the broker was away, a station that moved to another gateway)
  is reconciled: each difference between mirror and message becomes the call that makes it (connected,
  booted, status, transaction ended / started, sampled), and a carried StationBooted is replayed as well, since
  a reboot changes nothing a state diff can see.
Values no event carries (last_seen, maintenance, the connection times) are then copied as they are.

Which message wins: within one gateway run the higher ``seq``; between gateways (a station reconnected
elsewhere, and the old gateway noticed the dead socket only later) the later connection (``connected_at``), so
an old gateway's late "disconnected" never hides the station's new session. A station whose gateway's record
says offline (its Last Will), or names another run of that node (it restarted), is marked disconnected.

Pure: no I/O, no asyncio; the caller feeds decoded messages and node records in the order it receives them.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, replace

from csms.domain.state import (
    Event, MeterSampled, SiteState, StationBooted, StationConnected, StationDisconnected, StationState,
    StatusChanged, TransactionEnded, TransactionStarted,
)

from .codec import NodeRecord, StationMessage

log = logging.getLogger("csms.bus.mirror")


def replay(state: SiteState, e: Event) -> type[Event]:
    """Calls the SiteState method that emits ``e`` (which then updates the state as the gateway's did)."""
    sid = e.station_id
    if isinstance(e, StationConnected):
        state.connected(sid, e.version, e.at)
    elif isinstance(e, StationDisconnected):
        state.disconnected(sid, e.at)
    elif isinstance(e, StationBooted):
        state.booted(sid, e.boot, e.at)
    elif isinstance(e, StatusChanged):
        state.status(sid, e.connector_id, e.status, e.error_code, e.at)
    elif isinstance(e, TransactionStarted):
        state.transaction_started(sid, e.transaction)
    elif isinstance(e, TransactionEnded):
        state.transaction_ended(sid, e.transaction)
    elif isinstance(e, MeterSampled):
        state.sampled(sid, e.connector_id, e.sample)
    else:
        raise TypeError(f"cannot replay {type(e).__name__}")
    return type(e)


def reconcile(state: SiteState, target: StationState) -> list[type[Event]]:
    """Makes ``state``'s copy of the station equal to ``target`` and returns the events that took.

    Order follows a session's: connection, boot, connector statuses, transactions ended before the ones
    started (a connector's old transaction ends before its new one starts), samples."""
    sid = target.station_id
    st = state.station(sid)
    emitted: list[type[Event]] = []
    if target.connected and target.version is not None and (
            not st.connected or st.connected_at != target.connected_at or st.version != target.version):
        state.connected(sid, target.version, target.connected_at if target.connected_at is not None else 0.0)
        emitted.append(StationConnected)
    elif not target.connected and st.connected:
        state.disconnected(sid, target.disconnected_at if target.disconnected_at is not None else target.last_seen)
        emitted.append(StationDisconnected)
    if target.boot is not None and target.boot != st.boot:
        state.booted(sid, target.boot, target.last_seen)
        emitted.append(StationBooted)
    for cid, conn in target.connectors.items():
        if st.connectors.get(cid) != conn:
            state.status(sid, cid, conn.status, conn.error_code, conn.updated_at)
            emitted.append(StatusChanged)
    for cid, tx in list(st.transactions.items()):
        new = target.transactions.get(cid)
        if new is None or new.transaction_id != tx.transaction_id:
            state.transaction_ended(sid, tx)
            emitted.append(TransactionEnded)
    for cid, tx in target.transactions.items():
        old = st.transactions.get(cid)
        if old is None or old.transaction_id != tx.transaction_id:
            state.transaction_started(sid, tx)
            emitted.append(TransactionStarted)
        elif old != tx:
            st.transactions[cid] = tx  # the same transaction, details filled in later: no event says so
    for cid, sample in target.samples.items():
        if st.samples.get(cid) != sample:
            state.sampled(sid, cid, sample)
            emitted.append(MeterSampled)
    _copy_passive(st, target)
    return emitted


def _copy_passive(st: StationState, target: StationState) -> None:
    """What changes without an event (or what an event's call sets differently from the source's history)."""
    st.version, st.connected = target.version, target.connected
    st.connected_at, st.disconnected_at = target.connected_at, target.disconnected_at
    st.boot, st.last_seen = target.boot, target.last_seen
    st.maintenance = dict(target.maintenance)
    for name in ("connectors", "transactions", "samples"):
        mine, theirs = getattr(st, name), getattr(target, name)
        for key in [k for k in mine if k not in theirs]:
            del mine[key]


@dataclass
class Owner:
    """Whose messages about a station the mirror follows: a gateway run and the connection it reported."""

    node: str
    run: str
    seq: int
    connected_at: float | None


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    #: "next" (its event, if any, replayed), "resync" (reconciled only), "duplicate", "superseded".
    why: str
    #: The station's session starts with this message (a new connection, another gateway, or back after its
    #: gateway was offline): the controller makes a new link for it.
    new_session: bool = False


@dataclass(frozen=True)
class NodeInfo:
    run: str
    online: bool
    at: float


class StationMirror:
    """Feeds a SiteState from the bus. ``judge`` then ``apply`` each station message (the caller may update its
    links in between, so that a link's ``boots`` is current before StationBooted reaches the delivery)."""

    def __init__(self, state: SiteState):
        self.state = state
        self.owners: dict[str, Owner] = {}
        self.nodes: dict[str, NodeInfo] = {}
        #: Messages by what became of them (next, resync, duplicate, superseded); "gap": messages of a stream
        #: published but never received (a broker drops QoS 1 messages for a subscriber whose queue is full).
        self.counts: Counter[str] = Counter()

    def live(self, node: str, run: str) -> bool:
        """False once that gateway run is known gone: its node offline, or the node restarted as another run."""
        info = self.nodes.get(node)
        return info is None or (info.online and info.run == run)

    def judge(self, msg: StationMessage) -> Verdict:
        sid = msg.state.station_id
        owner = self.owners.get(sid)
        claim = msg.state.connected_at
        if owner is not None and (owner.node, owner.run) == (msg.node, msg.run):
            if msg.seq <= owner.seq:
                return self._count(Verdict(False, "duplicate"))
            if msg.seq > owner.seq + 1:
                self.counts["gap"] += msg.seq - owner.seq - 1  # published but never received: the broker dropped them
            why = "next" if msg.seq == owner.seq + 1 else "resync"
        elif owner is not None and owner.connected_at is not None and (claim is None or claim < owner.connected_at):
            return self._count(Verdict(False, "superseded"))
        else:
            # The first message of a run's stream (seq 1) misses nothing of it: its event is replayed too.
            why = "next" if msg.seq == 1 else "resync"
        st = self.state.stations.get(sid)
        was_on = st is not None and st.connected and owner is not None and (owner.node, owner.run) == (
            msg.node, msg.run) and st.connected_at == claim
        new_session = msg.state.connected and self.live(msg.node, msg.run) and not was_on
        return self._count(Verdict(True, why, new_session))

    def _count(self, v: Verdict) -> Verdict:
        self.counts[v.why] += 1
        return v

    def apply(self, msg: StationMessage, verdict: Verdict) -> list[type[Event]]:
        """Brings the station's state to the message's; returns the events emitted, in order."""
        if not verdict.accepted:
            return []
        emitted: list[type[Event]] = []
        target, live = msg.state, self.live(msg.node, msg.run)
        if not live and target.connected:
            # A retained message of a gateway run known gone: the station is not connected there any more.
            target = replace(target, connected=False, disconnected_at=self.nodes[msg.node].at)
        if verdict.why == "next" and msg.event is not None and live:
            emitted.append(replay(self.state, msg.event))
        emitted += reconcile(self.state, target)
        if verdict.why == "resync" and live and isinstance(msg.event, StationBooted) and StationBooted not in emitted:
            emitted.append(replay(self.state, msg.event))
            self.state.station(target.station_id).boot = target.boot
        self.owners[target.station_id] = Owner(msg.node, msg.run, msg.seq, msg.state.connected_at)
        return emitted

    def node_record(self, rec: NodeRecord, at: float | None = None) -> list[str]:
        """A node's record. Returns the stations this marked disconnected (at ``at``, default the record's own
        time; a Last Will's is when its gateway connected): those of a gateway run that is gone (offline by its
        Last Will or its goodbye, or replaced by a new run of the same node)."""
        known = self.nodes.get(rec.node)
        if known is not None and known.run != rec.run and rec.at < known.at:
            self.counts["stale_node_record"] += 1  # an older run's Last Will, delivered after its successor's hello
            return []
        self.nodes[rec.node] = NodeInfo(rec.run, rec.status == "online", rec.at if at is None else at)
        gone = []
        for sid, owner in self.owners.items():
            if owner.node == rec.node and not self.live(owner.node, owner.run) and \
                    self._drop(sid, rec.at if at is None else at):
                gone.append(sid)
        if gone:
            log.warning("node %s is %s: %d station(s) it held marked disconnected", rec.node,
                        "offline" if rec.status != "online" else "back as another run", len(gone))
        return gone

    def _drop(self, sid: str, at: float) -> list[type[Event]]:
        st = self.state.stations.get(sid)
        if st is None or not st.connected:
            return []
        self.state.disconnected(sid, at)
        return [StationDisconnected]

    def owner(self, station_id: str) -> Owner | None:
        return self.owners.get(station_id)

    def holder(self, station_id: str) -> str | None:
        """The gateway node holding the station's session now: the owner of its stream, if the station is
        connected and that gateway run is not known gone; None when no gateway holds it."""
        owner = self.owners.get(station_id)
        st = self.state.stations.get(station_id)
        if owner is None or st is None or not st.connected or not self.live(owner.node, owner.run):
            return None
        return owner.node
