"""The simulated charger's profile semantics, case by case from the OCPP 1.6 / 2.0.1 smart-charging rules."""

from __future__ import annotations

from dataclasses import replace

import pytest

from csms.runtime.isotime import iso_millis, parse_iso
from simulators.profile_store import ProfileStore
from simulators.profiles import (
    DAY,
    Kind,
    Period,
    Profile,
    Purpose,
    Schedule,
    profile_from_ocpp,
    profile_to_ocpp201,
)

T0 = parse_iso("2026-11-24T00:00:00Z")
MAX, DEF, TX = Purpose.STATION_MAX, Purpose.TX_DEFAULT, Purpose.TX


def prof(id, purpose=DEF, level=0, limits=((0, 16),), *, kind=Kind.ABSOLUTE, start=T0, duration=None, unit="A",
         connector=None, valid_from=None, valid_to=None, recurrency=None, tx=None, phases=None):
    periods = tuple(Period(s, l, phases) for s, l in limits)
    if connector is None:
        connector = 1 if purpose is TX else 0
    return Profile(id, level, purpose, kind, Schedule(periods, unit, None if kind is Kind.RELATIVE else start,
                                                        duration), connector, recurrency, valid_from, valid_to, tx)


def store(version="ocpp1.6", *profiles, tx_at=None, **kw) -> ProfileStore:
    s = ProfileStore(version=version, connectors=2, **kw)
    if tx_at is not None:
        s.transaction_started(1, "42", tx_at)
    for p in profiles:
        r = s.set(p)
        assert r.accepted, r.reason
    return s


# (name, profiles, transaction start or None, seconds after T0, expected A or None)
LIMIT_CASES = [
    ("no profile: unlimited", [], None, 10, None),
    ("tx default alone", [prof(1, DEF, 0, ((0, 16),))], None, 10, 16),
    ("station max alone", [prof(1, MAX, 0, ((0, 20),))], None, 10, 20),
    ("min of station max and default", [prof(1, MAX, 0, ((0, 10),)), prof(2, DEF, 0, ((0, 16),))], None, 10, 10),
    ("second period", [prof(1, DEF, 0, ((0, 16), (600, 8)))], None, 700, 8),
    ("higher stack level prevails", [prof(1, DEF, 0, ((0, 16),)), prof(2, DEF, 3, ((0, 25),))], None, 10, 25),
    ("expired duration falls back to lower level",
     [prof(1, DEF, 0, ((0, 6),)), prof(2, DEF, 3, ((0, 25),), duration=60)], None, 61, 6),
    ("within duration", [prof(1, DEF, 0, ((0, 6),)), prof(2, DEF, 3, ((0, 25),), duration=60)], None, 59, 25),
    ("validTo passed falls back", [prof(1, MAX, 0, ((0, 6),)), prof(2, MAX, 1, ((0, 30),), valid_to=T0 + 30)],
     None, 30, 6),
    ("validFrom not reached yet", [prof(1, MAX, 0, ((0, 6),)), prof(2, MAX, 1, ((0, 30),), valid_from=T0 + 30)],
     None, 29, 6),
    ("absolute not started yet", [prof(1, DEF, 0, ((0, 10),), start=T0 + 100)], None, 50, None),
    ("watts converted with 230 V x 3 phases", [prof(1, DEF, 0, ((0, 11040),), unit="W")], None, 1, 16),
    ("watts on one phase", [prof(1, DEF, 0, ((0, 3680),), unit="W", phases=1)], None, 1, 16),
    ("relative starts at the transaction", [prof(1, DEF, 0, ((0, 10), (300, 20)), kind=Kind.RELATIVE)],
     T0 + 100, 350, 10),
    ("relative later period", [prof(1, DEF, 0, ((0, 10), (300, 20)), kind=Kind.RELATIVE)], T0 + 100, 450, 20),
    ("tx profile beats tx default", [prof(1, DEF, 5, ((0, 6),)), prof(2, TX, 0, ((0, 20),), tx="42")],
     T0, 10, 20),
    ("tx profile still capped by station max",
     [prof(1, MAX, 0, ((0, 12),)), prof(2, TX, 0, ((0, 20),), tx="42")], T0, 10, 12),
    ("connector default beats connector 0 at the same level",
     [prof(1, DEF, 2, ((0, 16),)), prof(2, DEF, 2, ((0, 9),), connector=1)], None, 10, 9),
    ("connector 0 default at a higher level still prevails",
     [prof(1, DEF, 3, ((0, 16),)), prof(2, DEF, 2, ((0, 9),), connector=1)], None, 10, 16),
    ("daily recurring, second day", [prof(1, DEF, 0, ((0, 6), (3600, 32)), kind=Kind.RECURRING,
                                          recurrency="Daily")], None, DAY + 1800, 6),
    ("daily recurring, second day later", [prof(1, DEF, 0, ((0, 6), (3600, 32)), kind=Kind.RECURRING,
                                                recurrency="Daily")], None, DAY + 7200, 32),
]


@pytest.mark.parametrize("version", ["ocpp1.6", "ocpp2.0.1"])
@pytest.mark.parametrize("name,profiles,tx_at,offset,expected", LIMIT_CASES, ids=[c[0] for c in LIMIT_CASES])
def test_limit_at(version, name, profiles, tx_at, offset, expected):
    if version == "ocpp2.0.1" and any(p.purpose is TX and p.transaction_id is None for p in profiles):
        pytest.skip("2.0.1 TxProfiles always name their transaction")
    s = store(version, *profiles, tx_at=tx_at)
    lim = s.limit_at(1, T0 + offset)
    assert lim.amps == (None if expected is None else pytest.approx(expected))


def test_station_limit_is_independent_of_connector():
    s = store("ocpp1.6", prof(1, MAX, 0, ((0, 20),)), prof(2, DEF, 0, ((0, 8),), connector=2))
    assert s.station_limit_at(T0).amps == 20
    assert s.limit_at(0, T0).amps == 20
    assert s.limit_at(1, T0).amps == 20
    assert s.limit_at(2, T0).amps == 8


def test_one_phase_period_reports_phase_to_use():
    s = ProfileStore()
    p = Profile(1, 0, DEF, Kind.ABSOLUTE, Schedule((Period(0, 16, 1, 2),), "A", T0))
    assert s.set(p).accepted
    lim = s.limit_at(1, T0 + 1)
    assert (lim.amps, lim.number_phases, lim.phase_to_use) == (16, 1, 2)


# ---- replacement and rejection -------------------------------------------------------------------


def test_16_same_level_and_purpose_replaces_even_with_new_id():
    s = store("ocpp1.6", prof(1, MAX, 2, ((0, 10),)))
    assert s.set(prof(7, MAX, 2, ((0, 20),))).accepted
    assert list(s.profiles) == [7]
    assert s.limit_at(1, T0).amps == 20


def test_16_same_id_replaces_at_another_level():
    s = store("ocpp1.6", prof(1, MAX, 2, ((0, 10),)))
    assert s.set(prof(1, MAX, 4, ((0, 20),))).accepted
    assert [p.stack_level for p in s.profiles.values()] == [4]


def test_201_same_id_replaces():
    s = store("ocpp2.0.1", prof(1, MAX, 2, ((0, 10),)))
    assert s.set(prof(1, MAX, 2, ((0, 20),))).accepted
    assert s.limit_at(1, T0).amps == 20


def test_201_different_id_same_slot_overlapping_is_rejected():
    s = store("ocpp2.0.1", prof(1, MAX, 2, ((0, 10),)))
    r = s.set(prof(2, MAX, 2, ((0, 20),)))
    assert not r.accepted and "K01.FR.06" in r.reason
    assert list(s.profiles) == [1]


def test_201_different_id_same_slot_disjoint_validity_is_accepted():
    s = store("ocpp2.0.1", prof(1, MAX, 2, ((0, 10),), valid_to=T0 + 100))
    assert s.set(prof(2, MAX, 2, ((0, 20),), valid_from=T0 + 100)).accepted
    assert s.limit_at(1, T0 + 50).amps == 10
    assert s.limit_at(1, T0 + 150).amps == 20


REJECTIONS = [
    ("ocpp1.6", prof(1, MAX, 0, connector=1), "connector/EVSE 0"),
    ("ocpp1.6", prof(1, DEF, 9), "ChargeProfileMaxStackLevel"),
    ("ocpp1.6", prof(1, TX, 0, connector=1), "running transaction"),
    ("ocpp1.6", prof(1, DEF, 0, ((0, 16), (0, 8))), "increase"),
    ("ocpp1.6", prof(1, DEF, 0, ((5, 16),)), "begin at 0"),
    ("ocpp1.6", prof(1, DEF, 0, connector=5), "does not exist"),
    ("ocpp1.6", prof(1, DEF, 0, kind=Kind.RECURRING), "recurrencyKind"),
    ("ocpp2.0.1", prof(1, MAX, 0, kind=Kind.RELATIVE), "K01.FR.38"),
    ("ocpp2.0.1", prof(1, DEF, 0, start=None), "K01.FR.40"),
    ("ocpp2.0.1", prof(1, TX, 0, connector=0), "specific connector"),
]


@pytest.mark.parametrize("version,profile,why", REJECTIONS, ids=[r[2] for r in REJECTIONS])
def test_rejections(version, profile, why):
    s = ProfileStore(version=version, connectors=2)
    r = s.set(profile)
    assert not r.accepted and why in r.reason
    assert not s.profiles


def test_units_and_limits_advertised_are_enforced():
    s = ProfileStore(units=frozenset({"W"}), max_periods=2, max_profiles=1)
    assert "rate unit A" in s.set(prof(1)).reason
    assert "periods" in s.set(prof(1, unit="W", limits=((0, 1), (10, 2), (20, 3)))).reason
    assert s.set(prof(1, unit="W", limits=((0, 4000),))).accepted
    assert "MaxChargingProfilesInstalled" in s.set(prof(2, MAX, unit="W")).reason


def test_201_tx_profile_must_name_the_running_transaction():
    s = store("ocpp2.0.1", tx_at=T0)
    assert "transactionId" in s.set(prof(1, TX, tx="other")).reason
    assert s.set(prof(1, TX, tx="42")).accepted


def test_tx_profiles_are_cleared_at_transaction_end():
    s = store("ocpp1.6", prof(1, DEF, 0, ((0, 6),)), prof(2, TX, 1, ((0, 20),)), tx_at=T0)
    assert s.limit_at(1, T0 + 5).amps == 20
    s.transaction_ended(1)
    assert list(s.profiles) == [1]
    assert s.limit_at(1, T0 + 5).amps == 6


# ---- ClearChargingProfile ------------------------------------------------------------------------

CLEAR_CASES = [
    ({}, {1, 2, 3, 4}),
    ({"id": 2}, {2}),
    ({"id": 2, "purpose": MAX}, {2}),  # the id overrides the other criteria
    ({"id": 99}, set()),
    ({"purpose": DEF}, {2, 3}),
    ({"purpose": DEF, "connector": 1}, {3}),
    ({"stack_level": 1}, {1, 3}),
    ({"purpose": DEF, "stack_level": 1}, {3}),
    ({"connector": 0}, {1, 2}),
]


@pytest.mark.parametrize("criteria,cleared", CLEAR_CASES, ids=[str(c[0]) for c in CLEAR_CASES])
def test_clear(criteria, cleared):
    s = store("ocpp1.6", prof(1, MAX, 1), prof(2, DEF, 2), prof(3, DEF, 1, connector=1), prof(4, TX, 0, tx="42"),
              tx_at=T0)
    assert set(s.clear(**criteria)) == cleared
    assert set(s.profiles) == {1, 2, 3, 4} - cleared


# ---- GetCompositeSchedule ------------------------------------------------------------------------


def periods(cs):
    return [(p.start, p.limit) for p in cs.periods]


def test_composite_merges_levels_and_purposes():
    s = store("ocpp1.6",
              prof(1, MAX, 0, ((0, 32),)),
              prof(2, MAX, 1, ((0, 20),), duration=600),
              prof(3, DEF, 0, ((0, 16), (300, 25), (900, 10))))
    cs = s.composite_schedule(1, T0, 1200)
    assert periods(cs) == [(0, 16), (300, 20), (600, 25), (900, 10)]


def test_composite_from_now_in_watts():
    s = store("ocpp1.6", prof(1, DEF, 0, ((0, 16), (300, 10))))
    cs = s.composite_schedule(1, T0 + 100, 600, "W")
    assert cs.unit == "W"
    assert periods(cs) == [(0, 16 * 690), (200, 10 * 690)]


def test_composite_fallback_after_validto_and_unlimited_gap():
    s = store("ocpp2.0.1", prof(1, MAX, 0, ((0, 6),), start=T0 + 60), prof(2, MAX, 1, ((0, 25),), valid_to=T0 + 30))
    cs = s.composite_schedule(0, T0, 120, cap=32)
    assert periods(cs) == [(0, 25), (30, 32), (60, 6)]


def test_composite_relative_without_transaction_starts_now():
    s = store("ocpp1.6", prof(1, DEF, 0, ((0, 10), (60, 20)), kind=Kind.RELATIVE))
    assert periods(s.composite_schedule(1, T0 + 1000, 120)) == [(0, 10), (60, 20)]


def test_composite_daily_recurrence_repeats():
    s = store("ocpp1.6", prof(1, DEF, 0, ((0, 6), (3600, 16)), kind=Kind.RECURRING, recurrency="Daily"))
    cs = s.composite_schedule(1, T0 + 1800, DAY)
    assert periods(cs) == [(0, 6), (1800, 16), (DAY - 1800, 6)]


# ---- wire format ---------------------------------------------------------------------------------


def test_profile_from_ocpp_16_and_201():
    raw16 = {"charging_profile_id": 5, "stack_level": 2, "charging_profile_purpose": "ChargePointMaxProfile",
             "charging_profile_kind": "Absolute", "valid_to": "2026-11-24T00:10:00Z",
             "charging_schedule": {"charging_rate_unit": "A", "start_schedule": "2026-11-24T00:00:00Z",
                                   "duration": 60, "charging_schedule_period": [
                                       {"start_period": 0, "limit": 16.5, "number_phases": 1}]}}
    p = profile_from_ocpp(raw16, 0, "ocpp1.6")
    assert (p.id, p.purpose, p.schedule.start, p.valid_to, p.schedule.periods[0].limit) == (
        5, MAX, T0, T0 + 600, 16.5)
    raw201 = {"id": 9, "stack_level": 0, "charging_profile_purpose": "TxProfile", "charging_profile_kind": "Relative",
              "transaction_id": "abc", "charging_schedule": [{"id": 1, "charging_rate_unit": "W",
                                                               "charging_schedule_period": [
                                                                   {"start_period": 0, "limit": 7000}]}]}
    p = profile_from_ocpp(raw201, 1, "ocpp2.0.1")
    assert (p.id, p.purpose, p.kind, p.transaction_id, p.schedule.unit) == (9, TX, Kind.RELATIVE, "abc", "W")


def test_time_round_trip():
    assert parse_iso(iso_millis(T0 + 0.25)) == T0 + 0.25
    assert iso_millis(T0) == "2026-11-24T00:00:00.000Z"


@pytest.mark.parametrize("profile", [
    prof(10, TX, 8, ((0, 13.3), (600, 6)), duration=60, valid_to=T0 + 60, tx="tx-1", phases=3),
    prof(1, DEF, 0, ((0, 6),), phases=1),
    prof(12, MAX, 3, ((0, 11000),), kind=Kind.RELATIVE, unit="W"),
    prof(5, DEF, 1, ((0, 16),), kind=Kind.RECURRING, recurrency="Daily", valid_from=T0),
])
def test_a_profile_reported_as_2_0_1_reads_back_the_same(profile):
    """What the simulated 2.0.1 charger reports in ReportChargingProfiles is the profile it installed."""
    raw = profile_to_ocpp201(profile)
    back = profile_from_ocpp(raw, profile.connector, "ocpp2.0.1")
    assert back == replace(profile, schedule=replace(profile.schedule, id=1))
