"""The SQLite schema as csms built it before the numbered migrations (copied from ``csms/storage/sqlite.py`` at
8ca3262, whitespace aside): a file made with these statements is a file of an earlier build.

:data:`LEGACY_DDL` is the last such build's; :data:`FIRST_RELEASE_DDL` the first release's (52d194f), which
lacked the tables added later without a version bump (maintenance_status, station_settings, local_lists,
id_tokens, reservations, operator_caps, commissioning_reports) and, like every earlier build until the first mains
reading, meter_readings. Both wrote ``meta.schema_version`` = 1.
"""

LEGACY_DDL = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)",
    """CREATE TABLE IF NOT EXISTS stations (
        id TEXT PRIMARY KEY, version TEXT, vendor TEXT, model TEXT, serial_number TEXT,
        firmware_version TEXT, first_seen REAL, last_boot REAL, last_connected REAL,
        last_disconnected REAL, connected INTEGER DEFAULT 0)""",
    """CREATE TABLE IF NOT EXISTS connector_status (
        id INTEGER PRIMARY KEY, station_id TEXT NOT NULL, connector_id INTEGER NOT NULL,
        status TEXT NOT NULL, error_code TEXT, at REAL NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS connector_status_station ON connector_status (station_id, at)",
    """CREATE TABLE IF NOT EXISTS transactions (
        station_id TEXT NOT NULL, transaction_id TEXT NOT NULL, version TEXT, connector_id INTEGER,
        id_token TEXT, started_at REAL, meter_start_wh REAL, stopped_at REAL, meter_stop_wh REAL,
        stop_reason TEXT, start_key TEXT, PRIMARY KEY (station_id, transaction_id))""",
    "CREATE UNIQUE INDEX IF NOT EXISTS transactions_start_key ON transactions (station_id, start_key)",
    """CREATE TABLE IF NOT EXISTS transaction_events (
        station_id TEXT NOT NULL, transaction_id TEXT NOT NULL, seq_no INTEGER NOT NULL,
        event_type TEXT, trigger_reason TEXT, at REAL, PRIMARY KEY (station_id, transaction_id, seq_no))""",
    """CREATE TABLE IF NOT EXISTS meter_values (
        station_id TEXT NOT NULL, connector_id INTEGER NOT NULL, taken_at REAL NOT NULL,
        context TEXT NOT NULL DEFAULT '', transaction_id TEXT, current_l1 REAL, current_l2 REAL,
        current_l3 REAL, energy_wh REAL, sampled TEXT,
        PRIMARY KEY (station_id, connector_id, taken_at, context))""",
    """CREATE TABLE IF NOT EXISTS events (
        id INTEGER PRIMARY KEY, at REAL NOT NULL, kind TEXT NOT NULL, station_id TEXT,
        group_id TEXT, meter TEXT, detail TEXT)""",
    "CREATE INDEX IF NOT EXISTS events_at ON events (at)",
    """CREATE TABLE IF NOT EXISTS decisions (
        id INTEGER PRIMARY KEY, group_id TEXT NOT NULL, at REAL NOT NULL, meter_fresh INTEGER,
        budget TEXT, limits TEXT)""",
    "CREATE INDEX IF NOT EXISTS decisions_group_at ON decisions (group_id, at)",
    """CREATE TABLE IF NOT EXISTS maintenance_status (
        id INTEGER PRIMARY KEY, station_id TEXT NOT NULL, kind TEXT NOT NULL, status TEXT NOT NULL,
        request_id INTEGER, at REAL NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS maintenance_status_station ON maintenance_status (station_id, kind, at)",
    "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS station_settings (
        station_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT, readonly INTEGER, source TEXT NOT NULL,
        updated_at REAL NOT NULL, PRIMARY KEY (station_id, key))""",
    """CREATE TABLE IF NOT EXISTS local_lists (
        station_id TEXT PRIMARY KEY, version INTEGER NOT NULL, entries TEXT NOT NULL, updated_at REAL NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS id_tokens (
        organisation TEXT NOT NULL, token TEXT NOT NULL, status TEXT NOT NULL, expiry TEXT, parent TEXT,
        concurrent INTEGER NOT NULL DEFAULT 0, deleted INTEGER NOT NULL DEFAULT 0, updated_at REAL NOT NULL,
        updated_by TEXT NOT NULL, PRIMARY KEY (organisation, token))""",
    """CREATE TABLE IF NOT EXISTS reservations (
        id INTEGER PRIMARY KEY, station_id TEXT NOT NULL, connector INTEGER NOT NULL, id_token TEXT NOT NULL,
        parent TEXT, expires_at REAL NOT NULL, state TEXT NOT NULL, created_by TEXT NOT NULL,
        created_at REAL NOT NULL, updated_at REAL NOT NULL, transaction_id TEXT)""",
    "CREATE INDEX IF NOT EXISTS reservations_station ON reservations (station_id, state)",
    """CREATE TABLE IF NOT EXISTS operator_caps (
        station_id TEXT PRIMARY KEY, limit_a REAL NOT NULL, until REAL, set_at REAL NOT NULL, by TEXT)""",
    """CREATE TABLE IF NOT EXISTS commissioning_reports (
        id INTEGER PRIMARY KEY, group_id TEXT NOT NULL, started_at REAL NOT NULL, finished_at REAL,
        state TEXT NOT NULL, ok INTEGER, by TEXT, report TEXT)""",
)

#: The first release's: meta .. decisions (with their indexes), then counters; maintenance_status came later.
FIRST_RELEASE_DDL = (*LEGACY_DDL[:12], LEGACY_DDL[14])

#: What earlier builds created on the first mains reading (csms.storage.readings).
LEGACY_METER_READINGS = """CREATE TABLE IF NOT EXISTS meter_readings (
    serial TEXT NOT NULL, taken_at REAL NOT NULL, current_l1 REAL, current_l2 REAL, current_l3 REAL,
    PRIMARY KEY (serial, taken_at))"""

SCHEMA_VERSION_ROW = "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', '1')"
