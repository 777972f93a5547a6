"""The simulated charge point: the version-neutral :class:`~simulators.charger.Charger` with the OCPP face
its configured version calls for.

Picking the face is the one place that knows both version modules, so neither they nor the charger
import each other.
"""

from __future__ import annotations

from typing import Any

from simulators.chargepoint16 import ChargePoint16
from simulators.chargepoint201 import ChargePoint201
from simulators.charger import Charger

FACES = {"ocpp1.6": ChargePoint16, "ocpp2.0.1": ChargePoint201}


class SimCharger(Charger):
    """One simulated charging station speaking OCPP 1.6J or 2.0.1 as its config says."""

    def face_for(self, ws: Any) -> ChargePoint16 | ChargePoint201:
        return FACES[self.config.version](self, ws)
