"""Hypothesis strategies for what crosses the bus: station states, events, profiles, capabilities, and the
sequences of SiteState calls a station's OCPP handlers make."""

from __future__ import annotations

from hypothesis import strategies as st

from csms.domain.link import Capabilities, CompositeLimit, Outcome, ProfileSpec, Purpose
from csms.domain.state import (
    BootInfo, ConnectorState, MaintenanceStatus, MeterSampled, PhaseSample, StationBooted, StationConnected,
    StationDisconnected, StationState, StatusChanged, Transaction, TransactionEnded, TransactionStarted, Version,
)

STATION = "CP-1"
floats = st.floats(allow_nan=False, allow_infinity=False, width=64)
times = st.floats(min_value=0, max_value=4e9, allow_nan=False)
maybe_float = st.none() | floats
text = st.text(max_size=12)
maybe_text = st.none() | text
connector = st.integers(0, 4)
phase3 = st.tuples(maybe_float, maybe_float, maybe_float)

boots = st.builds(BootInfo, text, text, maybe_text, maybe_text)
samples = st.builds(PhaseSample, times, phase3, phase3, maybe_float, maybe_float)
statuses = st.sampled_from(["Available", "Preparing", "Charging", "SuspendedEV", "Finishing", "Faulted",
                            "Occupied", "Unavailable"])
maintenance = st.builds(MaintenanceStatus, text, times, st.none() | st.integers(-2**31, 2**31))


def transactions(cid: int | st.SearchStrategy[int] = connector) -> st.SearchStrategy[Transaction]:
    return st.builds(Transaction, st.text("0123456789abc", min_size=1, max_size=6),
                     cid if isinstance(cid, st.SearchStrategy) else st.just(cid), maybe_text, times, maybe_float,
                     st.none() | times, maybe_float, maybe_text)


@st.composite
def station_states(draw: st.DrawFn, station_id: str = STATION) -> StationState:
    cids = draw(st.lists(connector, unique=True, max_size=3))
    return StationState(
        station_id=station_id,
        version=draw(st.none() | st.sampled_from(list(Version))),
        connected=draw(st.booleans()),
        connected_at=draw(st.none() | times),
        disconnected_at=draw(st.none() | times),
        boot=draw(st.none() | boots),
        last_seen=draw(times),
        connectors={c: ConnectorState(c, draw(statuses), draw(maybe_text), draw(times)) for c in cids},
        transactions={c: draw(transactions(c)) for c in draw(st.lists(connector, unique=True, max_size=2))},
        samples={c: draw(samples) for c in draw(st.lists(connector, unique=True, max_size=2))},
        maintenance=draw(st.dictionaries(st.sampled_from(["firmware", "log"]), maintenance)),
    )


def events(station_id: str = STATION) -> st.SearchStrategy:
    sid = st.just(station_id)
    return st.one_of(
        st.builds(StationConnected, sid, times, st.sampled_from(list(Version))),
        st.builds(StationDisconnected, sid, times),
        st.builds(StationBooted, sid, times, boots),
        st.builds(StatusChanged, sid, times, connector, statuses, maybe_text),
        st.builds(TransactionStarted, sid, times, transactions()),
        st.builds(TransactionEnded, sid, times, transactions()),
        st.builds(MeterSampled, sid, times, connector, samples),
    )


#: One SiteState call as the OCPP handlers make them: (method name, arguments after the station id).
calls = st.one_of(
    st.tuples(st.just("connected"), st.tuples(st.sampled_from(list(Version)), times)),
    st.tuples(st.just("disconnected"), st.tuples(times)),
    st.tuples(st.just("seen"), st.tuples(times)),
    st.tuples(st.just("booted"), st.tuples(boots, times)),
    st.tuples(st.just("status"), st.tuples(connector, statuses, maybe_text, times)),
    st.tuples(st.just("transaction_started"), st.tuples(transactions(st.integers(1, 2)))),
    st.tuples(st.just("transaction_ended"), st.tuples(transactions(st.integers(1, 2)))),
    st.tuples(st.just("sampled"), st.tuples(connector, samples)),
    st.tuples(st.just("maintenance"), st.tuples(st.sampled_from(["firmware", "log"]), maintenance)),
)

specs = st.builds(ProfileSpec, st.integers(0, 2**31), st.integers(0, 10), st.sampled_from(list(Purpose)),
                  connector, st.one_of(floats, st.integers(0, 1000)), st.sampled_from(["A", "W"]),
                  st.integers(1, 3), st.none() | st.integers(1, 3), maybe_text, st.none() | times,
                  st.none() | st.integers(0, 86400), st.none() | times)
capabilities = st.builds(Capabilities, st.none() | st.integers(0, 100), st.lists(st.sampled_from(["A", "W"]),
                                                                                  max_size=2).map(tuple),
                         st.none() | st.integers(), st.none() | st.integers(), maybe_text, st.booleans(),
                         st.none() | st.integers(0, 3600), maybe_text, st.dictionaries(text, text, max_size=3),
                         st.booleans())
composites = st.none() | st.builds(CompositeLimit, maybe_float, st.sampled_from(["A", "W"]),
                                   st.none() | st.integers(1, 3))
outcomes = st.sampled_from(list(Outcome))
