"""The meter gateway's part of the operator config: meters and the MQTT broker.

The central system's config (``csms.config``) embeds these models, so that one TOML file describes a
site and both processes validate it the same way.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SERIAL_RE = re.compile(r"^[A-Za-z0-9]{2,31}G$")
PIN_RE = re.compile(r"^\d{8}$")

#: Clamp range of each Amp Guard variant, in A (absolute value).
VARIANT_RANGE_A: dict[str, float] = {"home": 100.0, "public": 400.0}
#: Voltage range the meter measures, in V.
VOLTAGE_RANGE_V = (0.0, 390.0)


class StrictModel(BaseModel):
    """Base for config sections: unknown keys are errors, so a typo never silently falls back to a default, and
    a value of the wrong type is refused rather than converted (``port = "9000"``, ``active = "yes"`` or
    ``active = 1``, ``port = 9000.0``); a whole number where a decimal is expected is the one conversion kept."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class MqttConfig(StrictModel):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password: str | None = None
    tls: bool = False
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    client_id: str | None = None
    keepalive: int = Field(30, ge=5, le=3600)
    #: Topic prefix under which a standalone gateway publishes normalised readings and meter state.
    publish_prefix: str = "csms/meters"


class MeterConfig(StrictModel):
    serial: str
    pin: str
    organisation: str
    variant: Literal["home", "public"] = "home"
    source: Literal["modbus", "mqtt"] = "modbus"
    # Modbus TCP
    host: str = "127.0.0.1"
    port: int = Field(502, ge=1, le=65535)
    unit: int = Field(1, ge=0, le=255)
    profile: str = "ampguard"
    poll_interval: float = Field(1.0, gt=0, le=3600)
    timeout: float = Field(2.0, gt=0, le=60)
    # MQTT
    topic: str | None = None
    #: Seconds without a valid reading before the meter counts as stale.
    stale_after: float = Field(10.0, gt=0, le=3600)
    #: Phases the meter's clamps sit on; one-phase sites use [1].
    phases: list[int] = Field(default_factory=lambda: [1, 2, 3])

    @field_validator("serial")
    @classmethod
    def _serial(cls, v: str) -> str:
        if not SERIAL_RE.match(v):
            raise ValueError(f"measurement device serial {v!r} must be letters/digits ending in 'G' (e.g. AG1234567G)")
        return v

    @field_validator("pin")
    @classmethod
    def _pin(cls, v: str) -> str:
        if not PIN_RE.match(v):
            raise ValueError("PIN must be exactly 8 digits (see the label on the Amp Guard)")
        return v

    @field_validator("phases")
    @classmethod
    def _phases(cls, v: list[int]) -> list[int]:
        if not v or any(p not in (1, 2, 3) for p in v) or len(set(v)) != len(v):
            raise ValueError("phases must be distinct values from 1..3, e.g. [1, 2, 3] or [1]")
        return v

    @property
    def range_a(self) -> float:
        return VARIANT_RANGE_A[self.variant]

    @property
    def mqtt_topic(self) -> str:
        return self.topic or f"ampguard/{self.serial}/measurement"
