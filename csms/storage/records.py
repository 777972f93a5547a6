"""What the central system writes, one small operation per domain fact (the same SQL on SQLite and PostgreSQL).

Each function returns an operation for :meth:`csms.storage.database.Storage.write`; they are idempotent
where a station may send the same message again after a reconnect (same StartTransaction, same
StopTransaction, same TransactionEvent seqNo, same meter value), so a retry is recorded once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from csms.storage.sql import Db

from csms.domain.settings import Setting
from csms.domain.state import BootInfo, PhaseSample, Transaction

TX_COUNTER = "ocpp16_transaction_id"
#: The requestId of 2.0.1 UpdateFirmware / GetLog (and the id an operator's firmware or log command is logged with).
REQUEST_COUNTER = "ocpp_request_id"
#: The stop reason we give a transaction the station never ended before starting another on its connector.
SUPERSEDED = "Superseded"

_EVENT_COLUMNS = ("station_id", "transaction_id", "seq_no", "event_type", "trigger_reason", "at")
_METER_VALUE_COLUMNS = ("station_id", "connector_id", "taken_at", "context", "transaction_id", "current_l1",
                        "current_l2", "current_l3", "energy_wh", "sampled")

_ORJSON_AS_JSON = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS


def to_json(value: Any, default: Callable[[Any], Any] | None = None) -> str:
    """The JSON ``json.dumps(value, default=default)`` writes, compact and in UTF-8, at a tenth of the cost
    (every MeterValues, every balancing decision and every logged event stores one or two).

    orjson writes NaN and infinities as ``null`` and refuses what ``json`` would not take as is
    (dataclasses, datetimes, subclasses, keys that are not strings, integers past 64 bits); all of
    those, and any real ``null``, go to ``json.dumps`` so the stored value reads back the same.
    """
    try:
        text = orjson.dumps(value, option=_ORJSON_AS_JSON)
    except TypeError:
        return json.dumps(value, default=default)
    return json.dumps(value, default=default) if b"null" in text else text.decode()


class LoggedEvent:
    """One entry of the event log the operator view lists (``detail`` stored as JSON, None when empty), as a write.

    A decision for 1,000 chargers logs 1,000 answers in one group commit: the writer inserts consecutive entries
    with one ``executemany`` (:meth:`Storage._run_batch <csms.storage.database.Storage._run_batch>`), which
    holds the interpreter a quarter as long as 1,000 single inserts while the event loop has a burst to send."""

    __slots__ = ("at", "kind", "station_id", "group_id", "meter", "detail")
    #: Writes with the same ``batch_sql`` that follow each other in a group commit go in one executemany.
    batch_sql = "INSERT INTO events (at, kind, station_id, group_id, meter, detail) VALUES (?, ?, ?, ?, ?, ?)"

    def __init__(self, kind: str, at: float, station_id: str | None, group_id: str | None, meter: str | None,
                 detail: dict[str, Any]):
        self.at, self.kind, self.station_id, self.group_id, self.meter = at, kind, station_id, group_id, meter
        self.detail = detail

    def params(self) -> tuple[Any, ...]:
        detail = to_json(self.detail, default=str) if self.detail else None
        return self.at, self.kind, self.station_id, self.group_id, self.meter, detail

    def __call__(self, db: Db) -> None:
        db.execute(self.batch_sql, self.params())


def log_event(kind: str, at: float, *, station_id: str | None = None, group_id: str | None = None,
              meter: str | None = None, **detail: Any) -> LoggedEvent:
    """One entry of the event log (see :class:`LoggedEvent`)."""
    return LoggedEvent(kind, at, station_id, group_id, meter, detail)


def next_counter(db: Db, name: str, floor: int = 0) -> int:
    """Allocates the next value of a named counter inside the caller's transaction."""
    row = db.execute("SELECT value FROM counters WHERE name = ?", [name]).fetchone()
    value = max((row[0] if row else 0), floor) + 1
    db.execute("INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
               [name, value])
    return value


def station_connected(station_id: str, version: str, at: float):
    def op(db: Db) -> None:
        db.execute(
            """INSERT INTO stations (id, version, first_seen, last_connected, connected) VALUES (?, ?, ?, ?, 1)
               ON CONFLICT(id) DO UPDATE SET version = excluded.version, last_connected = excluded.last_connected,
               connected = 1""",
            [station_id, version, at, at],
        )
    return op


def station_disconnected(station_id: str, at: float):
    def op(db: Db) -> None:
        db.execute("UPDATE stations SET connected = 0, last_disconnected = ? WHERE id = ?", [at, station_id])
    return op


def station_booted(station_id: str, boot: BootInfo, at: float):
    def op(db: Db) -> None:
        db.execute(
            """UPDATE stations SET vendor = ?, model = ?, serial_number = ?, firmware_version = ?, last_boot = ?
               WHERE id = ?""",
            [boot.vendor, boot.model, boot.serial_number, boot.firmware_version, at, station_id],
        )
    return op


def connector_status(station_id: str, connector_id: int, status: str, error_code: str | None, at: float):
    def op(db: Db) -> None:
        db.execute(
            "INSERT INTO connector_status (station_id, connector_id, status, error_code, at) VALUES (?, ?, ?, ?, ?)",
            [station_id, connector_id, status, error_code, at],
        )
    return op


def start_transaction_16(station_id: str, connector_id: int, id_token: str, started_at: float,
                         meter_start_wh: float):
    """Allocates a CSMS transaction id (unique, monotonic across restarts) or returns the one already
    given to this very StartTransaction (same station, connector, timestamp and meter start)."""
    start_key = f"{connector_id}|{started_at!r}|{meter_start_wh!r}|{id_token}"

    def op(db: Db) -> tuple[int, bool]:
        row = db.execute("SELECT transaction_id FROM transactions WHERE station_id = ? AND start_key = ?",
                         [station_id, start_key]).fetchone()
        if row:
            return int(row[0]), False
        tx_id = next_counter(db, TX_COUNTER)
        db.execute(
            """INSERT INTO transactions (station_id, transaction_id, version, connector_id, id_token, started_at,
               meter_start_wh, start_key) VALUES (?, ?, 'ocpp1.6', ?, ?, ?, ?, ?)""",
            [station_id, str(tx_id), connector_id, id_token, started_at, meter_start_wh, start_key],
        )
        return tx_id, True
    return op


def upsert_transaction(station_id: str, version: str, tx: Transaction):
    def op(db: Db) -> None:
        if tx.stopped_at is not None:
            _unsupersede(db, station_id, tx.transaction_id)
        db.execute(
            """INSERT INTO transactions (station_id, transaction_id, version, connector_id, id_token, started_at,
               meter_start_wh, stopped_at, meter_stop_wh, stop_reason)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT(station_id, transaction_id) DO UPDATE SET
                 id_token = COALESCE(transactions.id_token, excluded.id_token),
                 meter_start_wh = COALESCE(transactions.meter_start_wh, excluded.meter_start_wh),
                 stopped_at = COALESCE(transactions.stopped_at, excluded.stopped_at),
                 meter_stop_wh = COALESCE(transactions.meter_stop_wh, excluded.meter_stop_wh),
                 stop_reason = COALESCE(transactions.stop_reason, excluded.stop_reason)""",
            [station_id, tx.transaction_id, version, tx.connector_id, tx.id_token, tx.started_at,
             tx.meter_start_wh, tx.stopped_at, tx.meter_stop_wh, tx.stop_reason],
        )
    return op


def stop_transaction(station_id: str, transaction_id: str, stopped_at: float, meter_stop_wh: float | None,
                     reason: str | None):
    """Marks a transaction stopped; returns the stored row (or None when it is unknown). The first stop stands
    (a resent one changes nothing), except ours for a transaction a later one superseded: the station's own
    stop, arriving late, says when and with what register it really ended."""
    def op(db: Db) -> dict[str, Any] | None:
        _unsupersede(db, station_id, transaction_id)
        db.execute(
            """UPDATE transactions SET stopped_at = COALESCE(stopped_at, ?), meter_stop_wh = COALESCE(meter_stop_wh, ?),
               stop_reason = COALESCE(stop_reason, ?) WHERE station_id = ? AND transaction_id = ?""",
            [stopped_at, meter_stop_wh, reason, station_id, transaction_id],
        )
        rows = list(db.query("SELECT * FROM transactions WHERE station_id = ? AND transaction_id = ?",
                             [station_id, transaction_id]))
        return rows[0] if rows else None
    return op


def _unsupersede(db: Db, station_id: str, transaction_id: str) -> None:
    """Before the station's own stop of a transaction we closed as superseded: ours gives way to it."""
    db.execute("""UPDATE transactions SET stopped_at = NULL, meter_stop_wh = NULL, stop_reason = NULL
                  WHERE station_id = ? AND transaction_id = ? AND stop_reason = ?""",
               [station_id, transaction_id, SUPERSEDED])


def supersede_transactions(station_id: str, connector_id: int, transaction_id: str, started_at: float):
    """Ends, as :data:`SUPERSEDED` at ``started_at``, every other transaction still open on the station's
    connector (EVSE) that started before the one starting now: one connector has one session at a time, so
    the station lost those without reporting their end (a power cut, a reboot). Returns their ids."""
    def op(db: Db) -> list[str]:
        where = ("station_id = ? AND connector_id = ? AND stopped_at IS NULL AND transaction_id <> ? "
                 "AND started_at <= ?")
        params = [station_id, connector_id, transaction_id, started_at]
        ended = [r["transaction_id"] for r in db.query(f"SELECT transaction_id FROM transactions WHERE {where}",
                                                       params)]
        if ended:
            db.execute(f"UPDATE transactions SET stopped_at = ?, stop_reason = ? WHERE {where}",
                       [started_at, SUPERSEDED, *params])
        return ended
    return op


def transaction_event(station_id: str, transaction_id: str, seq_no: int, event_type: str, trigger: str,
                      at: float, then: Sequence[Callable[[Db], Any]] = ()):
    """Returns True the first time this (transaction, seqNo) is seen, False for a retry.

    ``then`` (the event's meter values and transaction row) runs in the same database transaction, and
    only the first time: if any of it fails, the event row is rolled back with it, so the station's
    retry is applied instead of being taken for a duplicate.
    """
    def op(db: Db) -> bool:
        cur = db.execute(
            db.dialect.insert_ignore("transaction_events", _EVENT_COLUMNS),
            [station_id, transaction_id, seq_no, event_type, trigger, at],
        )
        first = cur.rowcount == 1
        if first:
            for step in then:
                step(db)
        return first
    return op


def meter_values(station_id: str, connector_id: int, transaction_id: str | None,
                 samples: list[tuple[PhaseSample, str, list[dict]]]):
    """One row per (station, connector, time, context). Chargers often split one moment's measurands over
    several entries or messages with the same timestamp (currents in one, the energy register in the next):
    a sample whose row is already there is merged into it, and a retry, whose values are all there, changes
    nothing."""
    def op(db: Db) -> None:
        insert = db.dialect.insert_ignore("meter_values", _METER_VALUE_COLUMNS)
        for s, context, raw in samples:
            row = (station_id, connector_id, s.taken_at, context, transaction_id, *s.current, s.energy_wh,
                   to_json(raw))
            if db.execute(insert, row).rowcount == 0:
                _merge_meter_value(db, row)
    return op


_MV_KEY = " AND ".join(f"{c} = ?" for c in _METER_VALUE_COLUMNS[:4])
_MV_MERGED = _METER_VALUE_COLUMNS[4:9]  # transaction_id, currents, energy: the first value stands


def _merge_meter_value(db: Db, row: tuple) -> None:
    key = row[:4]
    old = next(iter(db.query(f"SELECT {', '.join(_METER_VALUE_COLUMNS[4:])} FROM meter_values WHERE {_MV_KEY}",
                             key)), None)
    if old is None:
        return
    values = [old[c] if old[c] is not None else new for c, new in zip(_MV_MERGED, row[4:9])]
    sampled = json.loads(old["sampled"]) if old["sampled"] else []
    added = [v for v in json.loads(row[9]) if v not in sampled]
    if values == [old[c] for c in _MV_MERGED] and not added:
        return  # a retry
    db.execute(f"UPDATE meter_values SET {', '.join(f'{c} = ?' for c in _MV_MERGED)}, sampled = ? WHERE {_MV_KEY}",
               [*values, to_json(sampled + added), *key])


def allocate_request_id(db: Db) -> int:
    """A request id no earlier command had, across restarts (2.0.1 requestId: a positive integer)."""
    return next_counter(db, REQUEST_COUNTER)


def maintenance_status(station_id: str, kind: str, status: str, request_id: int | None, at: float):
    """One FirmwareStatusNotification (kind "firmware") or Diagnostics/LogStatusNotification (kind "log")."""
    def op(db: Db) -> None:
        db.execute("INSERT INTO maintenance_status (station_id, kind, status, request_id, at) VALUES (?, ?, ?, ?, ?)",
                   [station_id, kind, status, request_id, at])
    return op


def latest_maintenance(db: Db) -> list[dict[str, Any]]:
    """Each station's latest firmware and log status (what a restart restores for the operator view)."""
    return list(db.query(
        """SELECT station_id, kind, status, request_id, at FROM maintenance_status m
           WHERE id = (SELECT id FROM maintenance_status WHERE station_id = m.station_id AND kind = m.kind
                       ORDER BY at DESC, id DESC LIMIT 1)"""))


def open_transactions(db: Db) -> list[dict[str, Any]]:
    return list(db.query("SELECT * FROM transactions WHERE stopped_at IS NULL ORDER BY started_at"))


def open_transactions_of(station_id: str) -> Callable[[Db], list[dict[str, Any]]]:
    """One station's running transactions (a gateway reads them as the station connects: it may have started
    them on another gateway)."""
    def op(db: Db) -> list[dict[str, Any]]:
        return list(db.query("SELECT * FROM transactions WHERE station_id = ? AND stopped_at IS NULL "
                             "ORDER BY started_at", [station_id]))
    return op


def record_decision(group_id: str, at: float, meter_fresh: bool, budget: dict, limits: Callable[[], dict]):
    """``limits`` is called on the writer's thread: for a group of 1,000 chargers, building and encoding
    the per-charger entries is milliseconds the event loop (and every station) need not wait."""
    def op(db: Db) -> None:
        db.execute(
            "INSERT INTO decisions (group_id, at, meter_fresh, budget, limits) VALUES (?, ?, ?, ?, ?)",
            [group_id, at, int(meter_fresh), to_json(budget), to_json(limits())],
        )
    return op


def station_settings(station_id: str, settings: Sequence[Setting], source: str, at: float):
    """What a station said of its configuration replaces what was known of those keys (``source``: the
    message that said it, e.g. GetConfiguration, NotifyReport)."""
    def op(db: Db) -> None:
        db.executemany(
            "INSERT INTO station_settings (station_id, key, value, readonly, source, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (station_id, key) DO UPDATE SET value = excluded.value, "
            "readonly = COALESCE(excluded.readonly, station_settings.readonly), source = excluded.source, "
            "updated_at = excluded.updated_at",
            [(station_id, s.key, s.value, None if s.readonly is None else int(s.readonly), source, at)
             for s in settings])
    return op
