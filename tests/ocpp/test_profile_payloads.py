"""The SetChargingProfile payloads the delivery sends keep to their schemas, so they go out unchecked.

Every decision sends a profile to each charger whose limit changed, and checking our own payload against its
schema was a fifth of what a profile cost the server besides the socket (``bench/RESULTS.md``, issue 14, fourth
round). Both versions' payloads are built by one typed function from a :class:`ProfileSpec`; these properties
hold that function's output to the schema (through the validator's full verdict, the ``ocpp`` package's own
where the compiled check refuses) over the range :func:`csms.ocpp.commands.proven` accepts, and a spec outside
that range is still checked before it goes out.
"""

from __future__ import annotations

import math

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ocpp.exceptions import OCPPError
from ocpp.messages import Call

from csms.domain.link import ProfileSpec, Purpose
from csms.domain.state import Version
from csms.ocpp import frames
from csms.ocpp.commands import MAX_INT, MAX_LIMIT, MAX_TIME, proven
from csms.ocpp.protocol import Protocol
from csms.ocpp.schemas import validator_for
from csms.ocpp.v16.commands import set_profile_call as call_16
from csms.ocpp.v201.commands import set_profile_call as call_201

ints = st.integers(0, MAX_INT)
times = st.none() | st.floats(0, MAX_TIME) | st.integers(0, int(MAX_TIME))


def specs(transaction_ids: st.SearchStrategy[str]) -> st.SearchStrategy[ProfileSpec]:
    """Every spec in the proven range (with the version's kind of transaction id)."""
    return st.builds(
        ProfileSpec, profile_id=ints, stack_level=ints, purpose=st.sampled_from(Purpose), connector=ints,
        limit=st.floats(0, MAX_LIMIT) | st.integers(0, int(MAX_LIMIT)), unit=st.sampled_from(["A", "W"]),
        number_phases=st.integers(1, 3), phase_to_use=st.none() | st.integers(1, 3),
        transaction_id=st.none() | transaction_ids, start_schedule=times, duration=st.none() | ints, valid_to=times)


#: 1.6 transaction ids are the integers the central system hands out; 2.0.1 ones are the station's strings.
specs_16 = specs(st.integers(0, 10**36 - 1).map(str))
specs_201 = specs(st.text(min_size=1, max_size=36))


def assert_valid(version: str, outbound: frames.Outbound) -> None:
    """What goes on the wire (the payload as the station reads it back) passes the version's schema."""
    on_the_wire = orjson.loads(frames.dumps(outbound.body)) if _fits_orjson(outbound.body) else None
    for payload in filter(None, (outbound.body, on_the_wire)):
        validator_for(version).validate(Call("1", outbound.action, payload))


def _fits_orjson(body: dict) -> bool:
    try:
        orjson.dumps(body)
        return True
    except orjson.JSONEncodeError:
        return False  # an integer past 64 bits: ``json`` writes it, and the body itself is what was checked


@settings(max_examples=400, deadline=None)
@given(specs_16)
def test_a_16_profile_in_the_proven_range_keeps_to_its_schema(spec):
    assert proven(spec)
    outbound = call_16(spec)
    assert outbound.action == "SetChargingProfile" and not outbound.checked
    assert_valid("1.6", outbound)


@settings(max_examples=400, deadline=None)
@given(specs_201)
def test_a_201_profile_in_the_proven_range_keeps_to_its_schema(spec):
    assert proven(spec)
    outbound = call_201(spec)
    assert outbound.action == "SetChargingProfile" and not outbound.checked
    assert_valid("2.0.1", outbound)


@pytest.mark.parametrize("change", [
    {"limit": math.nan}, {"limit": math.inf}, {"limit": -0.1}, {"limit": MAX_LIMIT * 2}, {"stack_level": -1},
    {"profile_id": MAX_INT + 1}, {"connector": True}, {"number_phases": 4}, {"number_phases": 2.0},
    {"phase_to_use": 0}, {"unit": "kW"}, {"transaction_id": "7" * 37}, {"transaction_id": 12},
    {"duration": -1}, {"start_schedule": -1.0}, {"valid_to": MAX_TIME + 1}, {"limit": "16"},
])
def test_a_spec_outside_the_proven_range_is_checked_before_it_goes_out(change):
    spec = ProfileSpec(10, 8, Purpose.TX, 1, 16.0, "A", 3, transaction_id="5", start_schedule=1.7e9,
                       duration=3630, valid_to=1.7e9 + 3600)
    assert proven(spec)
    odd = spec._replace(**change)
    assert not proven(odd)
    assert call_201(odd).checked


def test_a_checked_payload_its_schema_refuses_is_not_sent():
    p = Protocol(Version.V201, validator_for("2.0.1"), {}, frozenset())
    spec = ProfileSpec(10, 8, Purpose.TX, 1, 16.0, "A", 3, transaction_id="7" * 37)
    outbound = call_201(spec)
    with pytest.raises(OCPPError):
        p.send_call(outbound.action, outbound.body, now=0, timeout=5, check=outbound.checked)
    assert p.pending is None and p.data_to_send() == []
