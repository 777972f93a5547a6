"""``/metrics`` in the Prometheus text format, from a registry of the app's own.

Most figures are read when Prometheus scrapes (:class:`SiteCollector` walks the live state, the balancer's
latest decisions and the delivery's channels), so the hot paths carry no instrumentation. Only what
happens between scrapes needs counting as it happens: OCPP messages are counted by the app's
:class:`csms.ocpp.counts.MessageCounts` and read here; how long each balancer run takes is observed through
``BalancerController.run_observers``. Each app has its own registry, so two apps in one process (tests,
the demo) never mix their figures.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from csms.balancer.model import ControlState
from csms.config import charger_phases

from .view import SiteView

log = logging.getLogger("csms.web.metrics")

#: Seconds; a balancer run is normally well under a millisecond, a slow one is a problem at 10 ms.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


def node_metrics(node: dict) -> Iterator[Metric]:
    """What this process is in a deployment: its role, the groups it balances, the stations it holds or drives,
    and the other nodes it hears of on the bus (1 online, 0 offline)."""
    info = GaugeMetricFamily("csms_node_info", "This process: its role (all, gateway, controller) and node name.",
                             labels=["role", "node"])
    info.add_metric([node["role"], node["node"] or ""], 1.0)
    groups = GaugeMetricFamily("csms_node_groups_led", "Load-balancer groups this process balances now.")
    groups.add_metric([], float(len(node["groups"])))
    stations = GaugeMetricFamily("csms_node_stations", "Stations this process holds (gateway, all) or drives "
                                 "(controller) now.")
    stations.add_metric([], float(node["stations"]))
    peers = GaugeMetricFamily("csms_bus_node_online", "Nodes heard of on the bus: 1 online, 0 offline.",
                              labels=["node"])
    for name, online in sorted(node["nodes"].items()):
        peers.add_metric([name], 1.0 if online else 0.0)
    yield from (info, groups, stations, peers)


class SiteCollector(Collector):
    """Reads the live state through the site view at scrape time."""

    def __init__(self, view: SiteView):
        self.view = view

    def collect(self) -> Iterator[Metric]:
        view = self.view
        cfg = view.cfg
        now = view.clock()

        phase_current = GaugeMetricFamily("csms_phase_current_amperes",
                                          "Mains current per building phase from the group's meter (A).",
                                          labels=["group", "phase"])
        budget = GaugeMetricFamily("csms_phase_budget_amperes",
                                   "What the group's chargers may draw together per phase, latest decision (A).",
                                   labels=["group", "phase"])
        group_max = GaugeMetricFamily("csms_group_max_current_amperes",
                                      "Configured maxima per phase: the main fuse, and the group online/offline (A).",
                                      labels=["group", "kind"])
        meter_fresh = GaugeMetricFamily("csms_group_meter_fresh",
                                        "1 when the group's latest decision used a fresh meter reading.",
                                        labels=["group"])
        for g in cfg.load_balancers:
            for kind, value in (("fuse", g.supply_max_current), ("online", g.max_current_online),
                                ("offline", g.max_current_offline)):
                group_max.add_metric([g.id, kind], value)
            reading = view.last_readings.get(g.meter) if g.meter else None
            if reading is not None:
                for p in g.phases:
                    a = reading.current[p - 1]
                    if a is not None:
                        phase_current.add_metric([g.id, str(p)], a)
            decision = view.decision(g.id)
            if decision is not None:
                meter_fresh.add_metric([g.id], 1.0 if decision.meter_fresh else 0.0)
                for p, a in decision.budget.items():
                    budget.add_metric([g.id, str(p)], a)
        yield from (phase_current, budget, group_max, meter_fresh)
        yield from node_metrics(view.node())

        limit = GaugeMetricFamily("csms_charger_limit_amperes",
                                  "The limit the balancer decided for the charger, per phase (A).",
                                  labels=["charger", "group"])
        in_force = GaugeMetricFamily("csms_charger_limit_in_force_amperes",
                                     "The limit the charger accepted and applies now (A).", labels=["charger"])
        draw = GaugeMetricFamily("csms_charger_draw_amperes",
                                 "The charger's latest measured current per building phase (A).",
                                 labels=["charger", "phase"])
        connected = GaugeMetricFamily("csms_charger_connected", "1 while the charger's OCPP session is open.",
                                      labels=["charger"])
        control = GaugeMetricFamily("csms_charger_control_state",
                                    "1 for the charger's current control state, 0 for the others.",
                                    labels=["charger", "state"])
        sent = CounterMetricFamily("csms_profiles_sent", "Dynamic charging profiles sent.", labels=["charger"])
        accepted = CounterMetricFamily("csms_profiles_accepted", "Dynamic charging profiles accepted.",
                                       labels=["charger"])
        rejected = CounterMetricFamily("csms_profiles_rejected",
                                       "Dynamic charging profiles rejected, failed or unanswered.", labels=["charger"])
        for c in cfg.chargers:
            g = cfg.group_of(c.id)
            decision = view.decision(g.id) if g is not None else None
            lim = decision.limits.get(c.id) if decision is not None else None
            if lim is not None:
                limit.add_metric([c.id, g.id], lim.limit)
            st = view.state.stations.get(c.id)
            connected.add_metric([c.id], 1.0 if st is not None and st.connected else 0.0)
            sample = st.latest_sample() if st is not None else None
            if sample is not None:
                for i, phase in enumerate(charger_phases(c)):
                    if sample.current[i] is not None:
                        draw.add_metric([c.id, str(phase)], sample.current[i])
            ch = view.channels.get(c.id)
            if ch is None:
                continue
            if ch.in_force is not None:
                in_force.add_metric([c.id], ch.in_force)
            for state in ControlState:
                control.add_metric([c.id, state.value], 1.0 if ch.control is state else 0.0)
            sent.add_metric([c.id], ch.sent)
            accepted.add_metric([c.id], ch.accepted)
            rejected.add_metric([c.id], ch.rejected)
        yield from (limit, in_force, draw, connected, control, sent, accepted, rejected)

        staleness = GaugeMetricFamily("csms_meter_staleness_seconds", "Seconds since the meter's latest valid reading.",
                                      labels=["meter"])
        online = GaugeMetricFamily("csms_meter_online", "1 while the meter's readings are used.", labels=["meter"])
        refused = CounterMetricFamily("csms_meter_readings_refused", "Meter readings refused, by reason.",
                                      labels=["meter", "reason"])
        for m in cfg.meters:
            reading = view.last_readings.get(m.serial)
            if reading is not None:
                staleness.add_metric([m.serial], max(0.0, now - reading.taken_at))
            state = view.meter_states.get(m.serial)
            online.add_metric([m.serial], 1.0 if state is not None and state.status == "online" else 0.0)
            for reason, count in sorted(view.meter_refusals(m.serial).items()):
                refused.add_metric([m.serial, reason], count)
        yield from (staleness, online, refused)

        stations = view.state.stations.values()
        yield GaugeMetricFamily("csms_connected_stations", "Stations with an open OCPP session.",
                                value=sum(1 for s in stations if s.connected))
        yield GaugeMetricFamily("csms_running_transactions", "Transactions in progress.",
                                value=sum(len(s.transactions) for s in stations))

        messages = CounterMetricFamily("csms_ocpp_messages", "OCPP calls handled (in) or sent (out), by outcome.",
                                       labels=["direction", "action", "outcome"])
        for labels, count in sorted(view.message_counts.items()):
            messages.add_metric(list(labels), count)
        yield messages


class Metrics:
    """The app's registry: the scrape-time collector plus the balancer-run histogram."""

    def __init__(self, view: SiteView):
        self.view = view
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(SiteCollector(view))
        self.decision_latency = Histogram("csms_decision_latency_seconds",
                                          "How long one balancer run takes: allocation, delivery hand-off, storage queue.",
                                          ["group"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self._attached = False

    def _on_run(self, group_id: str, seconds: float) -> None:
        self.decision_latency.labels(group_id).observe(seconds)

    def attach(self) -> None:
        """Starts timing balancer runs."""
        if self._attached:
            return
        self.view.run_observers.append(self._on_run)
        self._attached = True

    def detach(self) -> None:
        if not self._attached:
            return
        self.view.run_observers.remove(self._on_run)
        self._attached = False

    def render(self) -> bytes:
        return generate_latest(self.registry)
