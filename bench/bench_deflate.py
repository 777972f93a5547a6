"""What permessage-deflate saves and costs per message the central system sends, by size: the figures behind
``[server] compression_threshold``.

Run: ``python bench/bench_deflate.py``.

Each message is compressed as the server compresses it (:meth:`csms.ocpp.deflate.BoundedDeflate.compress`: no
context, a 12-bit window), by Python's zlib and by zlib-ng (what the server uses where it is installed) in the
same run, and timed as the best of several runs of many (µs of CPU per message). The messages are
the central system's own, as they go on the wire: the replies a station gets all day, and the commands of the
control loop.
"""

from __future__ import annotations

import sys
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from csms.domain.link import ProfileSpec, Purpose  # noqa: E402
from csms.ocpp import frames  # noqa: E402
from csms.ocpp.deflate import BoundedDeflate  # noqa: E402
from csms.ocpp.v16.commands import set_profile_call as profile_16  # noqa: E402
from csms.ocpp.v201.commands import set_profile_call as profile_201  # noqa: E402
from csms.runtime.isotime import iso_millis, iso_seconds  # noqa: E402

UID = "3f9a0c1e-17"


def messages() -> dict[str, str]:
    now = time.time()
    spec = ProfileSpec(10, 8, Purpose.TX, 1, 10.9, "A", 1, transaction_id="12345", start_schedule=now - 30,
                       duration=3630, valid_to=now + 3600)
    fallback = ProfileSpec(1, 0, Purpose.TX_DEFAULT, 0, 6.0, "A", 3)
    tx201 = ProfileSpec(10, 8, Purpose.TX, 1, 10.9, "A", 1, transaction_id="f3c1e0d2-8a4b-4c1e-9f2a-0b1c2d3e4f5a",
                        start_schedule=now - 30, duration=3630, valid_to=now + 3600)
    calls = {
        "StatusNotification reply": [3, UID, {}],
        "Heartbeat reply": [3, UID, {"currentTime": iso_millis(now)}],
        "Authorize reply (1.6)": [3, UID, {"idTagInfo": {"status": "Accepted", "expiryDate": iso_seconds(now)}}],
        "BootNotification reply": [3, UID, {"currentTime": iso_millis(now), "interval": 300, "status": "Accepted"}],
        "StartTransaction reply": [3, UID, {"idTagInfo": {"status": "Accepted"}, "transactionId": 12345}],
        "TriggerMessage (1.6)": [2, UID, "TriggerMessage", {"requestedMessage": "MeterValues", "connectorId": 1}],
        "ChangeConfiguration": [2, UID, "ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": "60"}],
        "fallback TxDefault (1.6)": [2, UID, "SetChargingProfile", profile_16(fallback).body],
        "GetConfiguration (7 keys)": [2, UID, "GetConfiguration", {"key": [
            "ChargeProfileMaxStackLevel", "ChargingScheduleAllowedChargingRateUnit", "ChargingScheduleMaxPeriods",
            "MaxChargingProfilesInstalled", "ConnectorPhaseRotation", "MeterValuesSampledData",
            "MeterValueSampleInterval"]}],
        "SetChargingProfile (1.6)": [2, UID, "SetChargingProfile", profile_16(spec).body],
        "SetChargingProfile (2.0.1)": [2, UID, "SetChargingProfile", profile_201(tx201).body],
        "SendLocalList, 50 tags": [2, UID, "SendLocalList", {"listVersion": 7, "updateType": "Full",
                                                             "localAuthorizationList": [
            {"idTag": f"04A1B2C3D4E5{i:02d}", "idTagInfo": {"status": "Accepted"}} for i in range(50)]}],
    }
    return {name: frames.dumps(frame) for name, frame in calls.items()}


def main() -> None:
    import zlib

    from csms.ocpp.deflate import ENGINE
    engines = [ENGINE] if ENGINE is zlib else [zlib, ENGINE]  # Python's zlib is the baseline, in the same run
    deflaters = []
    for engine in engines:
        deflate = BoundedDeflate(65536, engine)
        deflate.accept("permessage-deflate")
        deflaters.append(deflate)
    names = [e.__name__.split(".")[-1] for e in engines]
    print(f"{'message':<28} {'bytes':>6} " + " ".join(f"{n + ' bytes':>13} {'saved':>6} {'µs':>5}" for n in names))
    for name, text in sorted(messages().items(), key=lambda item: len(item[1])):
        data = text.encode()
        row = f"{name:<28} {len(data):>6} "
        for deflate in deflaters:
            out = deflate.compress(data)
            runs = timeit.repeat(lambda: deflate.compress(data), number=2000, repeat=7)
            us = min(runs) / 2000 * 1e6
            row += f"{len(out):>13} {(len(data) - len(out)) / len(data):>6.0%} {us:>5.1f} "
        print(row.rstrip())
    if ENGINE is zlib:
        print("zlib-ng is not installed here: only Python's zlib was measured")


if __name__ == "__main__":
    main()
