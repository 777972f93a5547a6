"""The ways a simulated charger falls short of the specs, and how they are written on the command line.

Real firmwares reject some profile purposes, answer late, drop connections, ignore limits...; the
central system must cope with all of it, so every quirk is a knob a test, scenario or ``simulate``
run can switch on per charger.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from simulators.profiles import Purpose, purpose_from_ocpp


@dataclass
class Misbehaviour:
    """Ways real chargers fall short, switchable per simulated charger."""

    #: Purposes it answers SetChargingProfile with Rejected for.
    reject_purposes: frozenset[Purpose] = frozenset()
    #: Accepts only W schedules (ChargingScheduleAllowedChargingRateUnit = Power / RateUnit = W).
    only_watts: bool = False
    #: Accepts profiles but draws as if there were none.
    ignore_limits: bool = False
    #: Seconds it sits on every call from the central system before answering.
    answer_delay: float = 0.0
    #: Drops the connection every this many seconds (None = never); it reconnects with its backoff.
    drop_every: float | None = None
    #: The ChargeProfileMaxStackLevel / SmartChargingCtrlr.ProfileStackLevel it advertises.
    max_stack_level: int = 8
    #: Rejects profiles at exactly its own advertised maximum stack level (a firmware bug seen in the field).
    refuse_max_stack_level: bool = False
    #: What it does with calls from the central system before its BootNotification is accepted: "" answers them,
    #: "drop" ignores them (never replies), "error" answers CALLERROR SecurityError (SAP's simulator, strict mode).
    before_boot: str = ""
    #: Seconds it waits after connecting before it sends its BootNotification.
    boot_delay: float = 0.0
    #: Purposes it answers SetChargingProfile with CALLERROR NotImplemented for (all three: no smart charging).
    not_implemented_purposes: frozenset[Purpose] = frozenset()
    #: Answers GetCompositeSchedule Accepted with no schedule (no periods) whatever it applies.
    empty_composite: bool = False
    #: The measurands it can sample (None: all it knows); a list with any other member is refused as a whole.
    measurands: frozenset[str] | None = None
    #: Refuses meter-value intervals below this many seconds (0 = any).
    min_meter_interval: float = 0.0
    #: TriggerMessage: "" obeys, "ignore" answers Accepted and sends nothing, "refuse" answers Rejected,
    #: "not-implemented" answers NotImplemented.
    trigger: str = ""
    #: Sends every StopTransaction / TransactionEvent(Ended) twice (seen at chargers' shutdown).
    duplicate_stop: bool = False
    #: UnlockConnector: "" unlocks, "not-supported" is a fixed cable (1.6 NotSupported, 2.0.1 UnlockFailed: it
    #: has no such status), "fail" answers UnlockFailed (a jammed lock).
    unlock: str = ""
    #: Calls from the central system it answers with CALLERROR NotImplemented (firmwares without a feature).
    not_implemented_calls: frozenset[str] = frozenset()
    #: Seconds a reset keeps it offline before it reconnects and boots again.
    reboot_time: float = 1.0
    #: UpdateFirmware: "" installs, "download-fail" ends at DownloadFailed, "install-fail" at InstallationFailed.
    firmware: str = ""
    #: GetDiagnostics / GetLog over HTTP: "" POSTs multipart/form-data to the location, "put" PUTs the file to
    #: location + file name.
    upload: str = ""
    #: ReserveNow: "" reserves when it can, "refuse" answers Rejected (reservations switched off).
    reserve: str = ""
    #: (ACTION, N): the first N calls of ACTION from the central system on each connection are lost, never
    #: answered (a firmware still busy after connecting, a radio link that drops frames).
    lose: tuple[tuple[str, int], ...] = ()


KNOBS = ("reject=PURPOSE", "only-watts", "ignore-limits", "answer-delay=S", "drop-every=S", "max-stack-level=N",
         "refuse-max-stack-level", "before-boot=drop|error", "boot-delay=S", "not-implemented=PURPOSE|all",
         "empty-composite", "measurands=M+M...", "min-meter-interval=S", "trigger=ignore|refuse|not-implemented",
         "duplicate-stop", "unlock=not-supported|fail", "not-implemented-call=ACTION", "reboot-time=S",
         "firmware=download-fail|install-fail", "upload=put", "reserve=refuse", "lose=ACTION:N")
TRIGGER_MODES = ("ignore", "refuse", "not-implemented")
UNLOCK_MODES = ("not-supported", "fail")
FIRMWARE_MODES = ("download-fail", "install-fail")
UPLOAD_MODES = ("put",)


def parse_knob(mis: Misbehaviour, text: str) -> Misbehaviour:
    """Applies one knob written as on the command line (``ignore-limits``, ``answer-delay=5``,
    ``reject=TxProfile``...) to ``mis``; raises ValueError naming the valid knobs."""
    name, _, value = text.partition("=")
    try:
        if name == "reject":
            return replace(mis, reject_purposes=mis.reject_purposes | {purpose_from_ocpp(value)})
        if name in ("only-watts", "ignore-limits", "refuse-max-stack-level", "empty-composite",
                    "duplicate-stop") and not value:
            return replace(mis, **{name.replace("-", "_"): True})
        if name in ("answer-delay", "drop-every", "boot-delay", "min-meter-interval", "reboot-time"):
            return replace(mis, **{name.replace("-", "_"): float(value)})
        if name == "before-boot" and value in ("drop", "error"):
            return replace(mis, before_boot=value)
        if name == "not-implemented":
            purposes = frozenset(Purpose) if value == "all" else frozenset({purpose_from_ocpp(value)})
            return replace(mis, not_implemented_purposes=mis.not_implemented_purposes | purposes)
        if name == "measurands" and value:
            return replace(mis, measurands=frozenset(m for m in value.split("+") if m))
        if name == "trigger" and value in TRIGGER_MODES:
            return replace(mis, trigger=value)
        if name == "unlock" and value in UNLOCK_MODES:
            return replace(mis, unlock=value)
        if name == "firmware" and value in FIRMWARE_MODES:
            return replace(mis, firmware=value)
        if name == "upload" and value in UPLOAD_MODES:
            return replace(mis, upload=value)
        if name == "not-implemented-call" and value:
            return replace(mis, not_implemented_calls=mis.not_implemented_calls | {value})
        if name == "reserve" and value == "refuse":
            return replace(mis, reserve=value)
        if name == "lose" and ":" in value:
            action, _, count = value.partition(":")
            if action and int(count) > 0:
                return replace(mis, lose=(*mis.lose, (action, int(count))))
        if name == "max-stack-level":
            return replace(mis, max_stack_level=int(value))
    except ValueError:
        pass
    raise ValueError(f"misbehaviour {text!r} not understood; knobs are: {', '.join(KNOBS)} "
                     "(PURPOSE: ChargePointMaxProfile, ChargingStationMaxProfile, TxDefaultProfile, TxProfile)")
