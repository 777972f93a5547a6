"""The purpose chain: which kind of profile a charger gets, and what a refused one moves to.

Chargers differ in what they accept: some refuse a TxProfile, some their own maximum stack level, some
every profile. The rules here decide, from the refusals so far, what to try next; the worker
(:mod:`.delivery`) does the trying.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from csms.domain.link import Outcome, Purpose

from .channel import ChargerChannel

CHAINS = {
    "auto": (Purpose.TX, Purpose.TX_DEFAULT, Purpose.STATION_MAX),
    "tx": (Purpose.TX,),
    "tx_default": (Purpose.TX_DEFAULT,),
    "station_max": (Purpose.STATION_MAX,),
}
#: A retry after a failed limit waits 0.5 s, doubling per consecutive failure up to this ceiling.
RETRY_CEILING = 60.0


def chain_of(ch: ChargerChannel) -> tuple[Purpose, ...]:
    return CHAINS[ch.cfg.profile_purpose]


def purpose_of(ch: ChargerChannel) -> Purpose:
    """The purpose the charger's dynamic limit is sent as now."""
    chain = chain_of(ch)
    return chain[min(ch.chain_pos, len(chain) - 1)]


class Move(Enum):
    """What a failed limit moves the charger to."""

    STAY = "stay"                    # retry the same (purpose, stack level) after the backoff
    LOWER_LEVEL = "lower_level"      # the next lower stack level, same purpose
    NEXT_PURPOSE = "next_purpose"    # the next purpose of the chain, from its top stack level
    GIVE_UP = "give_up"              # nothing left to try on this connection


@dataclass(frozen=True)
class AfterFailure:
    move: Move
    #: The charger's consecutive refusals and failures once the move is made.
    refusals: int
    failures: int


def after_failure(ch: ChargerChannel, outcome: Outcome) -> AfterFailure:
    """A permanent refusal (not implemented for this purpose) moves on to the next purpose at once, or gives up
    at the chain's end. Some chargers refuse their own maximum stack level, so two refusals (one may be a race:
    a TxProfile right after StartTransaction) move to a lower level, then to the next purpose. Anything new to
    try restarts the backoff."""
    failures, refusals = ch.failures + 1, ch.refusals
    has_next_purpose = ch.chain_pos < len(chain_of(ch)) - 1
    move = Move.STAY
    if outcome.permanent:
        refusals = 0
        move = Move.NEXT_PURPOSE if has_next_purpose else Move.GIVE_UP
    elif outcome in (Outcome.REJECTED, Outcome.ERROR):
        refusals += 1
        if refusals >= 2:
            refusals = 0
            if ch.level_pos < len(ch.stack_levels or [1]) - 1:
                move = Move.LOWER_LEVEL
            elif has_next_purpose:
                move = Move.NEXT_PURPOSE
    if move in (Move.LOWER_LEVEL, Move.NEXT_PURPOSE):
        failures = 0
    return AfterFailure(move, refusals, failures)


def retry_delay(failures: int) -> float:
    """0.5 s after the first failure at a (purpose, stack level), doubling per consecutive failure to the
    ceiling; a refusal of the exhausted chain no longer restarts the backoff."""
    return min(RETRY_CEILING, 0.5 * 2.0 ** max(0, failures - 1))
