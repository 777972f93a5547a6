"""Glue between the central system's profile calls and the charger's
:class:`~simulators.profile_store.ProfileStore`: the misbehaviour knobs decide first, then the store's spec rules.

Mixed into :class:`~simulators.charger.Charger`.
"""

from __future__ import annotations

import logging

from simulators.charger_config import SimChargerConfig
from simulators.clock import SimClock
from simulators.connector import Connector
from simulators.profile_store import CompositeSchedule, ProfileStore
from simulators.profiles import profile_from_ocpp, purpose_from_ocpp

log = logging.getLogger(__name__)


class ProfileHandling:
    """SetChargingProfile, GetCompositeSchedule and the profile sent with a remote start."""

    id: str
    config: SimChargerConfig
    clock: SimClock
    store: ProfileStore

    def not_implemented(self, raw: dict) -> bool:
        """Whether SetChargingProfile for this profile's purpose is answered CALLERROR NotImplemented."""
        purposes = self.config.misbehaviour.not_implemented_purposes
        if not purposes:
            return False
        try:
            return purpose_from_ocpp(raw["charging_profile_purpose"]) in purposes
        except (KeyError, ValueError):
            return False

    def install_profile(self, raw: dict, connector: int) -> str:
        """SetChargingProfile: 'Accepted' or 'Rejected', after the misbehaviour knobs and the store's rules."""
        mis = self.config.misbehaviour
        try:
            profile = profile_from_ocpp(raw, connector, self.config.version)
        except (KeyError, ValueError, IndexError) as exc:
            log.warning("%s: unreadable charging profile (%s): %s", self.id, exc, raw)
            return "Rejected"
        if profile.purpose in mis.reject_purposes:
            log.info("%s: rejecting %s profile %d (misbehaviour reject_purposes)", self.id, profile.purpose, profile.id)
            return "Rejected"
        if mis.refuse_max_stack_level and profile.stack_level == mis.max_stack_level:
            log.info("%s: rejecting profile %d at its own max stack level (misbehaviour)", self.id, profile.id)
            return "Rejected"
        result = self.store.set(profile)
        if not result.accepted:
            log.info("%s: rejecting profile %d: %s", self.id, profile.id, result.reason)
            return "Rejected"
        return "Accepted"

    def composite(self, connector: int, duration: float, unit: str | None) -> CompositeSchedule:
        """GetCompositeSchedule, capped at the charger's maximum; in W when asked or when it only does W."""
        unit = unit or ("W" if self.config.misbehaviour.only_watts else "A")
        cap = self.config.max_current
        return self.store.composite_schedule(connector, self.clock.now(), duration, unit, cap=cap)  # type: ignore[arg-type]

    def _install_remote_profile(self, conn: Connector, raw: dict) -> None:
        raw = dict(raw)
        if self.config.version == "ocpp2.0.1" and conn.session is not None:
            raw.setdefault("transaction_id", conn.session.local_id)
        if self.install_profile(raw, conn.id) != "Accepted":
            log.warning("%s: the profile sent with the remote start was not installed", self.id)
