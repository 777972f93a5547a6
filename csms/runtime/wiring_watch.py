"""The passive commissioning check inside ``csms serve``: every group's mains readings and its chargers' own
samples go to a :class:`csms.commissioning.passive.WiringCorrelator`, and what it concludes is a warning.

A small observer: :meth:`WiringWatch.on_reading` is called by the app on the reading path, the station samples
and sessions come from the :class:`SiteState` event stream it subscribes to (given in the constructor), and the
warnings go to the event log through the storage it was given. It never acts on a charger: a wrong wiring is the
installer's to fix, and the balancer keeps the fuse by what the meter shows either way.

Each finding is logged once per group as a ``wiring_warning`` event (its message, evidence, fix and config
change) when it is first concluded, and ``wiring_warning_cleared`` when the evidence no longer shows it; it is
raised again only if it comes back after that. :meth:`WiringWatch.warnings` is what the status API shows.

Charger samples are timed by their arrival (the mains readings by the meter's own time, on the same host's clock
with the embedded gateway): a charger's clock may be off, and one sample's drift would otherwise shift every
event. A sample that arrives much later than it was taken (a batch sent after a reconnection) is not paired with
the one before it, so it is never read as a step at the moment it arrived.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from meter_gateway.reading import MeterReading

from csms.commissioning.model import MainsSample, SiteWiring
from csms.commissioning.passive import PassiveFinding, WiringCorrelator
from csms.config import LoadBalancerConfig, SiteConfig
from csms.domain.state import Event, MeterSampled, SiteState, TransactionEnded, TransactionStarted
from csms.runtime.commissioning import site_wiring
from csms.storage.database import Storage
from csms.storage.records import log_event

log = logging.getLogger("csms.commissioning.passive")

#: A sample that arrives this much (s) later after it was taken than the station's recent samples did was
#: delivered late; the least of the last OFFSETS_KEPT is the station's clock offset plus the usual delivery.
LATE_S = 5.0
OFFSETS_KEPT = 20
#: Seconds between two rebuilds of a group's wiring from the config and the chargers' reports.
WIRING_REFRESH = 10.0


class WiringWatch:
    """One correlator per metered group, and the warnings raised so far."""

    def __init__(self, config: Callable[[], SiteConfig], state: SiteState, channels: Mapping[str, Any],
                 storage: Storage, clock: Callable[[], float]):
        self.config, self.state, self.channels, self.storage, self.clock = config, state, channels, storage, clock
        self._correlators: dict[str, WiringCorrelator] = {}
        self._wiring: dict[str, tuple[float, SiteConfig, SiteWiring]] = {}
        #: group id -> (kind, subject) -> the warning as shown (finding, events, since)
        self._raised: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
        #: station id -> arrival time minus its own timestamp, of its latest samples (its clock's offset and
        #: the usual delivery time are the least of them)
        self._offsets: dict[str, deque[float]] = {}
        self._unsubscribe: Callable[[], None] | None = None

    def start(self) -> None:
        self._unsubscribe = self.state.subscribe(self._on_event)

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def warnings(self, group_id: str) -> list[dict[str, Any]]:
        """The group's current passive findings, oldest first."""
        return sorted(self._raised.get(group_id, {}).values(), key=lambda w: w["since"])

    # -- input ----------------------------------------------------------------------------------------

    def on_reading(self, reading: MeterReading) -> None:
        cfg = self.config()
        sample = MainsSample(reading.taken_at, reading.current, reading.power, reading.voltage, reading.received_at)
        for g in cfg.load_balancers:
            if g.meter != reading.serial:
                continue
            corr = self._correlators.setdefault(g.id, WiringCorrelator())
            changed = corr.mains(sample)
            wiring, fresh = self._group_wiring(cfg, g)
            if changed or fresh:
                self._update(g.id, wiring, corr.conclude(wiring))

    def _on_event(self, event: Event) -> None:
        if not isinstance(event, (MeterSampled, TransactionStarted, TransactionEnded)):
            return
        cfg = self.config()
        g = cfg.group_of(event.station_id)
        if g is None or g.meter is None:
            return
        corr = self._correlators.setdefault(g.id, WiringCorrelator())
        now = self.clock()
        if isinstance(event, MeterSampled):
            st = self.state.stations.get(event.station_id)
            if event.connector_id == 0 and st is not None and any(c != 0 for c in st.samples):
                return  # the station's main meter, when its outlet reports on its own
            offsets = self._offsets.setdefault(event.station_id, deque(maxlen=OFFSETS_KEPT))
            offsets.append(now - event.sample.taken_at)
            late = offsets[-1] - min(offsets) > LATE_S
            corr.charger_sample(event.station_id, now, event.sample.current, paired=not late)
        else:
            corr.session(event.station_id, now, isinstance(event, TransactionStarted))

    # -- output ---------------------------------------------------------------------------------------

    def _group_wiring(self, cfg: SiteConfig, g: LoadBalancerConfig) -> tuple[SiteWiring, bool]:
        """The group's wiring, rebuilt when the config changed or every WIRING_REFRESH s (a charger's reported
        rotation arrives with its boot); True when it differs from the one judged last."""
        now = self.clock()
        kept = self._wiring.get(g.id)
        if kept is not None and kept[1] is cfg and now - kept[0] < WIRING_REFRESH:
            return kept[2], False
        wiring = site_wiring(cfg, g, self.channels)
        self._wiring[g.id] = (now, cfg, wiring)
        if kept is None or kept[1] is not cfg:
            groups = {x.id for x in cfg.load_balancers if x.meter is not None}
            for gone in [gid for gid in self._correlators if gid not in groups]:
                self._correlators.pop(gone, None)
                self._raised.pop(gone, None)
                self._wiring.pop(gone, None)
        return wiring, kept is None or kept[2] != wiring

    def _update(self, group_id: str, wiring: SiteWiring, found: list[PassiveFinding]) -> None:
        raised = self._raised.setdefault(group_id, {})
        now = self.clock()
        current = {f.key: f for f in found}
        for key, f in current.items():
            if key in raised:
                raised[key].update(f.as_json())  # more evidence; raised once
                continue
            raised[key] = {**f.as_json(), "since": now}
            log.warning("group %s: wiring warning [%s] %s: %s (%d events); fix: %s", group_id, f.finding.kind,
                        f.finding.subject, f.finding.message, f.events, f.finding.fix)
            self.storage.write_nowait(log_event(
                "wiring_warning", now, group_id=group_id, meter=wiring.meter, finding=f.finding.kind,
                subject=f.finding.subject, message=f.finding.message, evidence=list(f.finding.evidence),
                fix=f.finding.fix, config=f.finding.config, events=f.events))
        for key in [k for k in raised if k not in current]:
            raised.pop(key)
            log.info("group %s: wiring warning [%s] %s cleared", group_id, *key)
            self.storage.write_nowait(log_event("wiring_warning_cleared", now, group_id=group_id,
                                                meter=wiring.meter, finding=key[0], subject=key[1]))
