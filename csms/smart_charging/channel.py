"""What the delivery knows about one charger: plain data, no tasks, no links, no clock.

The pure rules (:mod:`.policy`, :mod:`.exposure`, :mod:`.chain`) read and judge a :class:`ChargerChannel`;
only the worker (:mod:`.delivery`) changes it, after a link call or an event, so that every rule can be
tested from plain values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from csms.balancer.model import ControlState
from csms.config import ChargerConfig, LoadBalancerConfig
from csms.domain.link import Capabilities, Purpose


@dataclass(slots=True)
class Sent:
    """A dynamic limit the charger accepted: what, as which profile, and when (our clock)."""

    limit: float
    purpose: Purpose
    stack_level: int
    at: float


@dataclass(slots=True)
class ChargerChannel:
    cfg: ChargerConfig
    group: LoadBalancerConfig | None
    phases_wired: tuple[int, ...]
    #: A station session is up (its worker may call it).
    connected: bool = False
    #: The OCPP version its session speaks ("ocpp1.6", "ocpp2.0.1"), when the link says.
    version: str | None = None
    caps: Capabilities | None = None
    #: The newest limit the balancer wants (A per phase, 0 = paused); None = nothing decided yet.
    wanted: float | None = None
    #: The limit the charger accepted and applies now (None = only its fallback).
    in_force: float | None = None
    #: While a change is unanswered, what the charger may apply: the larger of the old and new limit.
    exposure_limit: float | None = None
    last: Sent | None = None
    last_increase_at: float = float("-inf")
    decrease_accepted_at: float = float("-inf")
    #: When the limit in force was first sent (its refreshes are no new limit for the EV to follow).
    limit_sent_at: float = float("-inf")
    #: The ``decrease_accepted_at`` of the decrease a mains reading has shown done (see ``ExposureBook.take_proofs``).
    proven_down: float | None = None
    control: ControlState = ControlState.DISCONNECTED_UNKNOWN
    #: The last state other than PENDING that was logged and stored: a limit change passes through PENDING
    #: and back, which is not news, so only a change of this is.
    settled_control: ControlState | None = None
    #: Why the control state is what it is ("accepted", "profile Rejected", ...), for the operator view.
    control_reason: str = ""
    fallback_installed: bool = False
    fallback_phases: tuple[int, ...] = ()
    chain_pos: int = 0
    level_pos: int = 0
    fallback_purpose: Purpose | None = None
    stack_levels: list[int] = field(default_factory=list)
    failures: int = 0
    #: Consecutive refusals at the current (purpose, stack level); two move down the chain.
    refusals: int = 0
    #: When the balancer last decided for this charger, and when its current session began (our clock).
    decided_at: float = float("-inf")
    session_seen_at: float = float("-inf")
    over_limit_since: float | None = None
    #: The station cannot take any charging profile we can send (NotImplemented/NotSupported for every
    #: purpose): nothing is sent until it reconnects or reboots.
    gave_up: bool = False
    #: No retry of a failed limit before this (exponential backoff), except a lower one.
    retry_at: float = float("-inf")
    last_attempt: float | None = None
    #: A session started and its first limit is not accepted yet: it may draw what ``may_apply`` says.
    new_session: bool = False
    #: Which accepted boot of its connection the set-up ran for (None: not set up on this connection yet).
    setup_for_boot: int | None = None
    #: Set-up parts (SETUP_PARTS of :mod:`.setup`) the station did not answer, asked again at ``setup_retry_at``.
    setup_unanswered: tuple[str, ...] = ()
    setup_retries: int = 0
    setup_retry_at: float = float("inf")
    trigger_due: bool = False
    last_trigger_at: float = float("-inf")
    #: A due trigger waits until then: the sample after a changed limit is asked for once the EV has followed.
    trigger_after: float = float("-inf")
    trigger_refusals: int = 0
    trigger_off: bool = False
    #: Dynamic profiles sent to this charger, and how many it accepted or not (for the operator view).
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    #: The station id; read on every exposure sum, so a plain attribute, not a property.
    id: str = field(init=False)

    def __post_init__(self) -> None:
        self.id = self.cfg.id

    @property
    def connector(self) -> int:
        """The EVSE/connector we control; a charger with one outlet uses 1."""
        return self.cfg.socket_connector or 1

    def reset_for_connection(self, version: str | None, session: bool) -> None:
        """A new connection (or a reboot on one): nothing we installed on the dynamic side is known any more,
        and a reconnect or a reboot is the one time a station that could not do something is asked again."""
        self.connected, self.version = True, version
        self.in_force = self.exposure_limit = None
        self.last = None
        self.chain_pos = self.level_pos = 0
        self.failures = self.refusals = 0
        self.gave_up = False
        self.retry_at = float("-inf")
        self.last_attempt = None
        self.setup_for_boot = None
        self.setup_unanswered, self.setup_retries, self.setup_retry_at = (), 0, float("inf")
        self.trigger_due = self.trigger_off = False
        self.trigger_refusals = 0
        self.new_session = session

    def expires_in(self, now: float, ttl: float) -> float:
        """Seconds until the dynamic limit sent last expires on the charger by itself (0: none is in force)."""
        return 0.0 if self.last is None else max(0.0, self.last.at + ttl - now)

    def forget_tx_profile(self) -> None:
        """A TxProfile dies with its transaction: forget it was ever accepted."""
        self.in_force = self.exposure_limit = None
        self.last = None if self.last and self.last.purpose is Purpose.TX else self.last

    def start_sending(self, amps: float, may_apply_now: float) -> float:
        """A limit goes out: until it is answered the charger may apply the old one or the new one, so it is
        exposed at the larger. Returns what it may apply meanwhile (``may_apply_now`` with no limit in force)."""
        applied = self.in_force if self.in_force is not None else may_apply_now
        self.exposure_limit = max(applied, amps)
        self.last_attempt = amps
        return applied

    def limit_accepted(self, sent: Sent, previous: float | None, answered_at: float) -> bool:
        """The charger accepted ``sent`` over ``previous`` (the limit in force when it went out) at ``answered_at``:
        it is in force. A decrease starts the ramp window when it was accepted (a charger may apply it as late as
        its answer, and its EV takes ``ramp_time`` from there); an increase starts the increase interval when it
        was sent. Returns whether it only refreshed the limit already in force."""
        refresh = self.last is not None and self.last.limit == sent.limit and not self.new_session
        self.in_force, self.exposure_limit, self.failures, self.refusals = sent.limit, None, 0, 0
        self.new_session = False
        self.retry_at = float("-inf")
        self.last = sent
        if not refresh:
            self.limit_sent_at = sent.at
        if previous is not None and sent.limit < previous:
            self.decrease_accepted_at = answered_at
        elif previous is not None and sent.limit > previous:
            self.last_increase_at = sent.at
        return refresh
