"""The whole central system on PostgreSQL: a simulated site charges, and what the operator view reads back
(transactions, events, history) comes from the PostgreSQL database, not from memory alone."""

from __future__ import annotations

import json

from csms.storage.migrations import MIGRATIONS
from tests.web.site import get, running_site, wait_until


async def test_a_site_charges_and_its_records_read_back_from_postgres(tmp_path, postgres_url):
    async with running_site(tmp_path, storage={"url": postgres_url}) as rig:
        app = rig.app
        assert app.storage.label == postgres_url
        await wait_until(lambda: "AG7654321G" in app.last_readings, what="a first mains reading")
        await rig.charging_at_full("CP1")
        await wait_until(lambda: rig.charger_draw("CP1") > 15.5, what="meter values with the car's draw")
        app.readings.flush()
        await app.storage.write(lambda db: None)  # everything queued so far is committed

        code, _, body = await get(rig, "/api/transactions")
        assert code == 200
        tx = json.loads(body)
        assert tx["running"][0]["station_id"] == "CP1"
        assert tx["history"][0]["transaction_id"] == tx["running"][0]["transaction_id"]
        stored = await app.storage.read(lambda db: list(db.query(
            "SELECT * FROM transactions WHERE station_id = ?", ["CP1"])))
        assert [t["transaction_id"] for t in stored] == [tx["history"][0]["transaction_id"]]
        values = await app.storage.read(lambda db: list(db.query(
            "SELECT current_l1 FROM meter_values WHERE station_id = ? AND current_l1 > 15", ["CP1"])))
        assert values, "the car's meter values are stored"
        stations = await app.storage.read(lambda db: {r["id"]: r for r in db.query("SELECT * FROM stations")})
        assert stations["CP1"]["connected"] == 1 and stations["CP2"]["version"] == "ocpp2.0.1"

        code, _, body = await get(rig, "/api/events?station=CP1&kind=profile&limit=3")
        events = json.loads(body)
        assert 1 <= len(events) <= 3 and events[0]["detail"]["outcome"] == "Accepted"
        code, _, body = await get(rig, "/api/history/phases?group=garage&points=5000")
        h = json.loads(body)
        assert code == 200 and max(r["l1"] for r in h["currents"]) > 20 and h["budget"]
        code, _, body = await get(rig, "/api/history/limits?group=garage&charger=CP1")
        limits = json.loads(body)["decisions"]
        assert any(d["limits"]["CP1"]["limit"] == 16 for d in limits)
        applied = await app.storage.read(lambda db: db.execute("SELECT count(*) FROM schema_migrations").fetchone()[0])
        assert applied == len(MIGRATIONS)
