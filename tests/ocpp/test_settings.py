"""What both versions read from a station's reported configuration: one rule for a number-valued setting."""

from __future__ import annotations

import pytest

from csms.ocpp.commands import int_setting


@pytest.mark.parametrize(("reported", "read"), [
    ("8", 8), (" 8 ", 8), ("-1", -1), ("0", 0),
    (None, None),        # not reported (1.6: an unknown key; 2.0.1: a variable without a value)
    ("", None), ("eight", None), ("8.5", None),  # firmwares write anything: the setting is not known
])
def test_a_reported_setting_is_a_number_or_unknown(reported, read) -> None:
    assert int_setting(reported) == read
