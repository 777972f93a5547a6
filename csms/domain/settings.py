"""What the central system has learned of a station's configuration (1.6 keys, 2.0.1 device-model variables).

Stations tell it in answers to the operator's commands (GetConfiguration, GetVariables, a ChangeConfiguration
or SetVariables they accepted) and in 2.0.1 NotifyReport messages after a GetBaseReport; the operator view
shows the latest value of each, with when and how it was learned. A 2.0.1 variable is keyed
``Component[@evse].Variable[:instance]``, the form the operator's commands take.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Setting:
    key: str
    #: None: the station did not say (a write-only variable such as a password, or a key it does not report).
    value: str | None
    #: None: not known.
    readonly: bool | None = None
