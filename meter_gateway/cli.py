"""``meter-gateway``: run the gateway on its own, or read one meter once as an installer's check.

    meter-gateway run  --config site.toml
    meter-gateway read --config site.toml --serial AG1234567G
    meter-gateway read --host 192.168.1.50 --port 502 --profile sdm630 [--unit 1]
    meter-gateway maps [--register-dir DIR]

Exit codes: 0 done, 1 the meter could not be read, 2 bad config or arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from collections.abc import Sequence

from pydantic import ValidationError

from .config import MeterConfig
from .configfile import ConfigFileError, GatewaySettings, load_gateway_settings
from .gateway import MeterGateway, counts_summary
from .modbus import ReadFailed, make_client, read_registers
from .mqtt import describe, run_subscription, topic_matches
from .publisher import ReadingPublisher
from .reading import MeterReading
from .registers import RegisterMapError, available_register_maps, load_register_map
from .tasks import cancel_and_wait
from .validate import ReadingJudge, Rejected

log = logging.getLogger("meter_gateway")

#: Seconds ``run`` waits on shutdown for the last readings and the "stopped" states to reach the broker.
FLUSH_TIMEOUT = 3.0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="meter-gateway", description="Read mains meters and publish normalised readings.")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="poll every meter of the config and publish readings and states to MQTT")
    run.add_argument("--config", required=True, metavar="FILE", help="the operator's site config (TOML)")

    read = sub.add_parser("read", help="read one meter once and print the decoded, validated reading")
    read.add_argument("--config", metavar="FILE", help="site config; with --serial, reads that meter as configured")
    read.add_argument("--serial", help="serial of a [[meters]] entry of --config")
    read.add_argument("--host", help="Modbus TCP host, for a meter not in any config")
    read.add_argument("--port", type=int, default=502)
    read.add_argument("--unit", type=int, default=1, help="Modbus device id (default 1)")
    read.add_argument("--profile", help="register map name, e.g. sdm630 (see: meter-gateway maps)")
    read.add_argument("--variant", choices=["home", "public"], default="public", help="clamp range to judge against")
    read.add_argument("--register-dir", action="append", default=[], metavar="DIR", help="extra register-map folder")
    read.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the meter (default 10)")

    maps = sub.add_parser("maps", help="list the register maps (meter models) available")
    maps.add_argument("--register-dir", action="append", default=[], metavar="DIR",
                      help="extra register-map folder (repeatable), searched before the shipped ones")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.log_level != "DEBUG":
        # Our own log says which meter failed and why; pymodbus would repeat it without the meter's name.
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    try:
        if args.command == "run":
            settings = load_gateway_settings(args.config)
            if settings.mqtt is None:
                raise ConfigFileError([f"{args.config}: mqtt: meter-gateway run publishes to a broker: add an [mqtt] section"])
            if not settings.meters:
                raise ConfigFileError([f"{args.config}: meters: no [[meters]] to read"])
            return asyncio.run(_run(settings))
        if args.command == "read":
            return asyncio.run(_read(args))
        return _maps(args.register_dir)
    except ConfigFileError as exc:
        for line in exc.lines:
            print(line, file=sys.stderr)
        return 2
    except RegisterMapError as exc:
        print(exc, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


# ---- run ------------------------------------------------------------------------------------------------


async def _run(settings: GatewaySettings) -> int:
    assert settings.mqtt is not None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with ReadingPublisher(settings.mqtt) as publisher:
            gateway = MeterGateway(settings.meters, settings.mqtt, publisher.reading, publisher.state, settings.register_dirs)
            async with gateway:
                log.info("meter gateway running: %d meter(s), publishing to %s", len(settings.meters), describe(settings.mqtt))
                await stop.wait()
                log.info("stopping")
            if not await publisher.flush(FLUSH_TIMEOUT):
                log.warning("could not publish the final meter states within %g s", FLUSH_TIMEOUT)
            for serial in gateway.serials:
                log.info("meter %s: %s", serial, counts_summary(gateway.stats(serial)))
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return 0


# ---- read -----------------------------------------------------------------------------------------------


async def _read(args: argparse.Namespace) -> int:
    if args.serial:
        if not args.config:
            print("meter-gateway read: --serial needs --config FILE", file=sys.stderr)
            return 2
        settings = load_gateway_settings(args.config)
        meter = settings.meter(args.serial)
        if meter is None:
            known = ", ".join(m.serial for m in settings.meters) or "none"
            print(f"{args.config}: meters: no meter with serial {args.serial!r} (configured: {known})", file=sys.stderr)
            return 2
        dirs = settings.register_dirs + args.register_dir
        if meter.source == "mqtt":
            assert settings.mqtt is not None
            return await _read_mqtt(meter, settings, args.timeout)
    elif args.host and args.profile:
        try:
            meter = MeterConfig(
                serial="INSTALLCHECKG", pin="00000000", organisation="-", variant=args.variant,
                host=args.host, port=args.port, unit=args.unit, profile=args.profile, timeout=min(args.timeout, 60),
            )
        except ValidationError as exc:
            print(f"meter-gateway read: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}", file=sys.stderr)
            return 2
        dirs = args.register_dir
    else:
        print("meter-gateway read: give --config FILE --serial S, or --host H --profile NAME [--port P --unit U]", file=sys.stderr)
        return 2
    return await _read_modbus(meter, dirs)


async def _read_modbus(meter: MeterConfig, dirs: Sequence[str]) -> int:
    regmap = load_register_map(meter.profile, dirs)
    where = f"{meter.host}:{meter.port} unit {meter.unit}"
    client = make_client(meter)
    try:
        if not await client.connect():
            print(f"cannot connect to {where} within {meter.timeout:g} s", file=sys.stderr)
            return 1
        values = await read_registers(client, regmap, meter.unit)
    except ReadFailed as exc:
        print(f"{where}: {exc.detail}", file=sys.stderr)
        return 1
    except Exception as exc:  # pymodbus raises its own exceptions for I/O problems
        print(f"{where}: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(f"meter {meter.serial}: {regmap.name} ({regmap.description}) at {where}")
    print("decoded registers:")
    for quantity, value in values.items():
        print(f"  {quantity:<12} {value:12.3f}")
    return _judge_and_print(lambda: ReadingJudge.for_meter(meter).from_registers(values, time.time()))


async def _read_mqtt(meter: MeterConfig, settings: GatewaySettings, timeout: float) -> int:
    assert settings.mqtt is not None
    first: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def on_message(topic: str, payload: bytes) -> None:
        if topic_matches(topic, meter.mqtt_topic) and not first.done():
            first.set_result(payload)

    task = asyncio.create_task(run_subscription(settings.mqtt, "gateway-read", [meter.mqtt_topic], on_message))
    try:
        async with asyncio.timeout(timeout):
            payload = await first
    except TimeoutError:
        print(f"meter {meter.serial}: nothing on {meter.mqtt_topic} at {describe(settings.mqtt)} within {timeout:g} s", file=sys.stderr)
        return 1
    finally:
        await cancel_and_wait([task])
    print(f"meter {meter.serial}: payload on {meter.mqtt_topic}: {payload[:500]!r}")
    return _judge_and_print(lambda: ReadingJudge.for_meter(meter).from_payload(payload, time.time()))


def _judge_and_print(judge) -> int:  # type: ignore[no-untyped-def]
    try:
        reading: MeterReading = judge()
    except Rejected as exc:
        print(f"REFUSED ({exc.kind}): {exc.detail}")
        return 1
    print("reading (as the balancer sees it):")
    for phase in range(3):
        amps, volts = reading.current[phase], reading.voltage[phase]
        if amps is None:
            continue
        v = f"{volts:7.1f} V" if volts is not None else "      - V"
        print(f"  L{phase + 1}: {amps:8.2f} A  {v}")
    if reading.power is not None:
        print(f"  total power: {reading.power:.0f} W")
    print(f"  flags: {', '.join(sorted(reading.flags)) or 'none'}")
    return 0


def _maps(dirs: Sequence[str]) -> int:
    for name in available_register_maps(dirs):
        try:
            print(f"{name:<16} {load_register_map(name, dirs).description}")
        except RegisterMapError as exc:
            print(f"{name:<16} BROKEN: {exc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
