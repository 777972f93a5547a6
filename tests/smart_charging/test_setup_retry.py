"""A set-up the station did not answer is asked again (:class:`csms.smart_charging.setup.Installer`), with a
fake link and a fake clock: no sockets, no timers. A refusal is an answer and is not asked again."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from hypothesis import given, strategies as st

from csms.config import SmartChargingConfig, charger_phases, parse_config
from csms.domain.link import Capabilities, Outcome, ProfileSpec, Purpose
from csms.smart_charging.channel import ChargerChannel
from csms.smart_charging.setup import (
    SETUP_CONCURRENCY, SETUP_RETRY_CEILING, SETUP_RETRY_FIRST, Installer, setup_retry_delay,
)


@dataclass
class Link:
    """Answers each call with the next scripted outcome for its kind (the last one repeats)."""

    caps: list[Capabilities] = field(default_factory=lambda: [Capabilities(max_stack_level=3)])
    profiles: list[Outcome] = field(default_factory=lambda: [Outcome.ACCEPTED])
    metering: list[Outcome] = field(default_factory=lambda: [Outcome.ACCEPTED])
    sent: list[ProfileSpec] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    id: str = "CP1"
    unsupported: frozenset[str] = frozenset()

    @staticmethod
    def _next(script: list):
        return script.pop(0) if len(script) > 1 else script[0]

    async def read_capabilities(self, connector: int) -> Capabilities:
        self.calls.append("caps")
        return self._next(self.caps)

    async def set_measurands(self, measurands: list[str]) -> Outcome:
        self.calls.append("measurands")
        return self._next(self.metering)

    async def set_meter_interval(self, interval: int) -> Outcome:
        self.calls.append("interval")
        return self._next(self.metering)

    async def set_profile(self, spec: ProfileSpec) -> Outcome:
        self.calls.append(f"profile:{spec.purpose.value}")
        self.sent.append(spec)
        return self._next(self.profiles)

    async def set_availability(self, connector: int, operative: bool) -> Outcome:
        return Outcome.ACCEPTED

    async def clear_profile(self, **kw) -> Outcome:
        return Outcome.ACCEPTED


def channel() -> ChargerChannel:
    cfg = parse_config({
        "organisations": [{"id": "org", "name": "Org"}],
        "chargers": [{"id": "CP1", "password": "0123456789abcdef", "organisation": "org", "max_current": 32,
                      "offline_current": 6}],
        "load_balancers": [{"id": "g", "name": "G", "organisation": "org", "chargers": ["CP1"],
                            "supply_max_current": 63, "max_current_online": 32, "max_current_offline": 16}],
    })
    c = cfg.chargers[0]
    return ChargerChannel(c, cfg.group_of(c.id), charger_phases(c))


class Rig:
    def __init__(self) -> None:
        self.now = 1000.0
        self.events: list[tuple[str, dict]] = []

        async def set_profile(ch, link, spec):
            return await link.set_profile(spec)
        self.installer = Installer(SmartChargingConfig(), lambda kind, ch, **d: self.events.append((kind, d)),
                                   set_profile, lambda: self.now, lambda ch: 230.0)

    def kinds(self) -> list[str]:
        return [k for k, _ in self.events]


def run(coro):
    return asyncio.run(coro)


def test_an_unanswered_fallback_is_asked_again_until_it_is_installed():
    rig, ch = Rig(), channel()
    silent = Link(profiles=[Outcome.TIMEOUT, Outcome.TIMEOUT, Outcome.TIMEOUT, Outcome.TIMEOUT, Outcome.ACCEPTED])
    run(rig.installer.set_up(ch, silent))
    assert not ch.fallback_installed and ch.setup_unanswered == ("fallback",)
    assert rig.installer.retry_in(ch) == SETUP_RETRY_FIRST and ch.setup_retry_at == rig.now + SETUP_RETRY_FIRST
    assert rig.kinds()[-1] == "setup_unanswered"

    silent.calls.clear()
    run(rig.installer.repair(ch, silent))  # both purposes unanswered again: the wait doubles
    assert silent.calls == ["profile:tx_default", "profile:station_max"]
    assert ch.setup_unanswered == ("fallback",) and rig.installer.retry_in(ch) == 2 * SETUP_RETRY_FIRST

    silent.calls.clear()
    run(rig.installer.repair(ch, silent))  # only the unanswered part is asked, not capabilities or metering
    assert silent.calls == ["profile:tx_default"]
    assert ch.fallback_installed and ch.fallback_purpose is Purpose.TX_DEFAULT and ch.setup_unanswered == ()
    assert rig.installer.retry_in(ch) is None and ch.setup_retry_at == float("inf")
    assert rig.events[-1] == ("setup_completed", {"retries": 2})


def test_a_refused_fallback_is_an_answer_and_is_not_asked_again():
    rig, ch = Rig(), channel()
    run(rig.installer.set_up(ch, Link(profiles=[Outcome.REJECTED])))
    assert not ch.fallback_installed and ch.setup_unanswered == ()
    assert rig.installer.retry_in(ch) is None
    assert "setup_unanswered" not in rig.kinds()


def test_a_refusal_after_a_timeout_ends_the_fallback_retries():
    rig, ch = Rig(), channel()
    run(rig.installer.set_up(ch, Link(profiles=[Outcome.TIMEOUT, Outcome.REJECTED])))
    assert ch.setup_unanswered == ()  # one purpose answered Rejected: the charger is there and said no


def test_capabilities_read_at_last_reshape_the_stack_levels_and_ask_a_refused_fallback_again():
    """Unread capabilities mean defaults (A and W, stack level 8); a watt-only charger refuses the fallback in A.
    Once it answers the query, the fallback goes out again, in W."""
    rig, ch = Rig(), channel()
    link = Link(caps=[Capabilities(read=False, unanswered=True),
                      Capabilities(max_stack_level=2, rate_units=("W",))],
                profiles=[Outcome.REJECTED, Outcome.REJECTED, Outcome.ACCEPTED])
    run(rig.installer.set_up(ch, link))
    assert ch.setup_unanswered == ("capabilities",) and ch.stack_levels == [8, 7]
    assert not ch.fallback_installed and {s.unit for s in link.sent} == {"A"}
    run(rig.installer.repair(ch, link))
    assert ch.setup_unanswered == () and ch.stack_levels == [2, 1]
    assert ch.fallback_installed and link.sent[-1].unit == "W"


def test_a_capability_that_is_no_number_is_named_in_the_log_and_the_defaults_apply(caplog):
    rig, ch = Rig(), channel()
    with caplog.at_level(logging.WARNING, logger="csms"):
        run(rig.installer.set_up(ch, Link(caps=[Capabilities(ignored={"ProfileStackLevel": "abc"})])))
    assert ch.stack_levels == [8, 7]
    [line] = [r.getMessage() for r in caplog.records if "not a whole number" in r.getMessage()]
    assert line.startswith(f"{ch.id}: ") and "ProfileStackLevel='abc'" in line
    assert ("capabilities_ignored", {"ProfileStackLevel": "abc"}) in rig.events


def test_refused_capabilities_are_not_asked_again():
    rig, ch = Rig(), channel()
    run(rig.installer.set_up(ch, Link(caps=[Capabilities(read=False)])))
    assert ch.setup_unanswered == ()


def test_unanswered_metering_is_asked_again_and_a_refused_list_still_walks_down():
    rig, ch = Rig(), channel()
    link = Link(metering=[Outcome.TIMEOUT, Outcome.ACCEPTED, Outcome.REJECTED, Outcome.ACCEPTED, Outcome.ACCEPTED])
    run(rig.installer.set_up(ch, link))
    assert ch.setup_unanswered == ("metering",)
    link.calls.clear()
    run(rig.installer.repair(ch, link))
    assert link.calls == ["measurands", "measurands", "interval"] and ch.setup_unanswered == ()


def test_a_new_connection_forgets_the_retries():
    rig, ch = Rig(), channel()
    run(rig.installer.set_up(ch, Link(profiles=[Outcome.TIMEOUT])))
    rig.installer.retry_in(ch)
    ch.reset_for_connection("ocpp1.6", False)
    assert ch.setup_unanswered == () and ch.setup_retries == 0 and ch.setup_retry_at == float("inf")


@given(st.integers(min_value=0, max_value=200))
def test_the_retry_wait_grows_to_its_ceiling_and_never_beyond(retries):
    delay = setup_retry_delay(retries)
    assert SETUP_RETRY_FIRST <= delay <= SETUP_RETRY_CEILING
    assert setup_retry_delay(retries + 1) >= delay


def test_set_ups_in_flight_are_bounded_and_a_cancelled_one_frees_its_slot():
    """A controller taking over thousands of stations asks them at most SETUP_CONCURRENCY at a time (each with one
    call outstanding); the others wait for a slot, and a set-up cancelled while it waits or runs gives it back."""

    async def scenario() -> None:
        rig = Rig()
        answer = asyncio.Event()
        in_flight, most = 0, 0

        class Slow(Link):
            async def read_capabilities(self, connector: int) -> Capabilities:
                nonlocal in_flight, most
                in_flight += 1
                most = max(most, in_flight)
                try:
                    await answer.wait()
                finally:
                    in_flight -= 1
                return Capabilities(max_stack_level=3)

        n = SETUP_CONCURRENCY + 20
        tasks = [asyncio.create_task(rig.installer.set_up(channel(), Slow())) for _ in range(n)]
        for _ in range(5):
            await asyncio.sleep(0)
        assert in_flight == most == SETUP_CONCURRENCY
        tasks[0].cancel()  # one in flight
        tasks[-1].cancel()  # one waiting for a slot
        for _ in range(5):
            await asyncio.sleep(0)
        assert in_flight == SETUP_CONCURRENCY  # the freed slot went to the next one waiting
        answer.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert sum(isinstance(r, asyncio.CancelledError) for r in results) == 2
        assert most == SETUP_CONCURRENCY and in_flight == 0
        await asyncio.wait_for(rig.installer.set_up(channel(), Link()), 1)  # every slot came back

    run(scenario())
