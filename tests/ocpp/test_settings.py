"""What both versions read from a station's reported configuration: one rule for a number-valued setting, and
the values that were no number kept so that the operator is told."""

from __future__ import annotations

import pytest

from ocpp.v16 import call_result as call_result16
from ocpp.v201 import call_result as call_result201

from csms.ocpp.commands import NumberSettings, int_setting
from csms.ocpp.v16.commands import Commands16
from csms.ocpp.v201.commands import Commands201


@pytest.mark.parametrize(("reported", "read"), [
    ("8", 8), (" 8 ", 8), ("-1", -1), ("0", 0),
    (None, None),        # not reported (1.6: an unknown key; 2.0.1: a variable without a value)
    ("", None), ("eight", None), ("8.5", None),  # firmwares write anything: the setting is not known
])
def test_a_reported_setting_is_a_number_or_unknown(reported, read) -> None:
    assert int_setting(reported) == read


def test_a_number_setting_that_is_no_number_is_kept_as_ignored() -> None:
    numbers = NumberSettings({"ProfileStackLevel": "abc", "Entries": "24", "PeriodsPerSchedule": " ", "X": None})
    assert [numbers.get(k) for k in ("ProfileStackLevel", "Entries", "PeriodsPerSchedule", "X", "absent")] == \
        [None, 24, None, None, None]
    assert numbers.ignored == {"ProfileStackLevel": "abc"}  # a blank or missing value is the station not saying


class Station:
    """The session a version's commands talk through, answering every call with ``reply``."""

    id = "CP7"
    unsupported: frozenset[str] = frozenset()

    def __init__(self, reply) -> None:
        self.reply = reply

    async def call(self, payload, timeout: float, **kw):
        return self.reply


async def test_both_versions_report_the_values_they_ignored() -> None:
    v16 = Commands16(Station(call_result16.GetConfiguration(configuration_key=[
        {"key": "ChargeProfileMaxStackLevel", "value": "abc", "readonly": True},
        {"key": "ChargingScheduleMaxPeriods", "value": "24", "readonly": True},
    ])), timeout=1.0)
    caps = await v16.read_capabilities(1)
    assert (caps.max_stack_level, caps.max_periods, caps.ignored) == (None, 24, {"ChargeProfileMaxStackLevel": "abc"})

    v201 = Commands201(Station(call_result201.GetVariables(get_variable_result=[
        {"attribute_status": "Accepted", "component": {"name": "SmartChargingCtrlr"},
         "variable": {"name": "ProfileStackLevel"}, "attribute_value": "-"},
        {"attribute_status": "Accepted", "component": {"name": "SmartChargingCtrlr"},
         "variable": {"name": "PeriodsPerSchedule"}, "attribute_value": "24"},
    ])), timeout=1.0)
    caps = await v201.read_capabilities(1)
    assert (caps.max_stack_level, caps.max_periods, caps.ignored) == (None, 24, {"ProfileStackLevel": "-"})
