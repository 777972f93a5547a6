"""A charger's transactions: started by a card, a remote start or a plugged-in car, ended by the car,
the driver or the central system, and reported through the outbox so they survive a disconnection.

Mixed into :class:`~simulators.charger.Charger`.
"""

from __future__ import annotations

import logging

from simulators.charger_config import SimChargerConfig
from simulators.clock import SimClock
from simulators.connector import Connector, Session
from simulators.outbox import Outgoing
from simulators.profile_store import ProfileStore

log = logging.getLogger(__name__)


class ChargerSessions:
    """Beginning, naming and ending transactions (the state lives on the charger)."""

    id: str
    config: SimChargerConfig
    clock: SimClock
    store: ProfileStore
    connectors: dict[int, Connector]
    connected: bool
    _tx_counter: int

    def start_session(self, connector: int = 1, id_tag: str | None = None) -> None:
        """Starts a transaction on a plugged-in connector as if a card had been presented."""
        conn = self.connectors[connector]
        if conn.ev is None or conn.session is not None:
            raise RuntimeError(f"charger {self.id} connector {connector}: needs a car plugged in and no session")
        self._begin(conn, id_tag or self.config.id_tag or "SIMTAG0001", authorize=True)

    def stop_session(self, connector: int = 1, reason: str = "Local") -> None:
        conn = self.connectors[connector]
        if conn.session is not None:
            self._end(conn, reason)

    def remote_start(self, connector: int | None, id_tag: str, raw_profile: dict | None = None,
                     remote_start_id: int | None = None) -> Session | bool:
        """RemoteStartTransaction / RequestStartTransaction. Starts now if a car is plugged in, else when one is."""
        if connector is None:
            conn = next((c for c in self.connectors.values() if c.session is None and c.operative
                         and not self.refused_by_reservation(c, id_tag, False)), None)
        else:
            conn = self.connectors.get(connector)
        if conn is None or conn.session is not None or not conn.operative \
                or self.refused_by_reservation(conn, id_tag, False):  # reserved for another card
            return False
        if conn.ev is None:
            conn.remote_tag, conn.remote_start_id, conn.remote_profile = id_tag, remote_start_id, raw_profile
            return True
        self._begin(conn, id_tag, remote_start_id=remote_start_id)
        if raw_profile is not None:
            self._install_remote_profile(conn, raw_profile)
        return conn.session or False

    def remote_stop(self, transaction_id: str) -> bool:
        conn = self.session_by_transaction(transaction_id)
        if conn is None:
            return False
        self._end(conn, "Remote")
        return True

    def authorized(self, conn: Connector, sess: Session) -> None:
        """The central system accepted the card: the connector may now offer current."""
        sess.authorized = True
        if conn.session is sess:
            self.step()

    def abandon(self, conn: Connector, sess: Session) -> None:
        """The central system refused the token (Blocked, Invalid, ConcurrentTx...): the session never becomes a
        transaction and the car never draws."""
        if conn.session is sess:
            conn.session = None
            self.store.transaction_ended(conn.id)
            self.step()

    def transaction_id_assigned(self, conn: Connector, sess: Session, transaction_id: str) -> None:
        """The central system named the transaction (1.6 StartTransaction.conf)."""
        sess.transaction_id = transaction_id
        if conn.session is sess:
            self.store.transactions[conn.id] = (transaction_id, sess.started_at)

    def session_by_transaction(self, transaction_id: str) -> Connector | None:
        return next((c for c in self.connectors.values()
                     if c.session is not None and transaction_id in (c.session.transaction_id, c.session.local_id)),
                    None)

    def _next_local_id(self) -> str:
        self._tx_counter += 1
        return f"{self.id}-{int(self.clock.now())}-{self._tx_counter}"

    def _begin(self, conn: Connector, id_tag: str, authorize: bool = False,
               remote_start_id: int | None = None) -> None:
        now = self.clock.now()
        conn.remote_tag = conn.remote_start_id = conn.remote_profile = None
        if self.refused_by_reservation(conn, id_tag, authorize and self.connected):
            log.info("%s: connector %s is reserved for another card; %s refused", self.id, conn.id, id_tag)
            return
        sess = Session(self._next_local_id(), id_tag, now, conn.energy_wh, remote_start_id=remote_start_id)
        conn.session = sess
        self.store.transaction_started(conn.id, sess.local_id, now)
        sess.started_offline = not self.connected
        sess.authorized = not (authorize and self.connected)
        if sess.authorized:  # no Authorize to wait for: the card takes the reservation now (else the face does)
            self.claim_reservation(conn, sess, None)
        self.queue(Outgoing(f"start {sess.local_id}",
                            lambda proto, c=conn, s=sess, a=authorize: proto.send_start(c, s, a), keep=True))
        self.step(now)

    def _end(self, conn: Connector, reason: str) -> None:
        sess = conn.session
        if sess is None:
            return
        conn.session = None
        self.store.transaction_ended(conn.id)
        if conn.scheduled_operative is not None:
            conn.operative, conn.scheduled_operative = conn.scheduled_operative, None
        meter_stop = conn.energy_wh
        sess.ended_offline = not self.connected
        for _ in range(2 if self.config.misbehaviour.duplicate_stop else 1):
            self.queue(Outgoing(f"stop {sess.local_id}",
                                lambda proto, c=conn, s=sess, r=reason, m=meter_stop: proto.send_stop(c, s, r, m),
                                keep=True))
        self.step()
