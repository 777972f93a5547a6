"""The port through which the operator's HTTP API reaches stations: one method, nothing else of the app.

:class:`csms.ocpp.operator.OperatorCommands` implements it; the web layer gets it in its
:class:`csms.web.view.SiteView`, so it can send the commands of :mod:`.catalogue` and nothing more (no
profiles of the operator's: the balancer alone decides what a charger may draw, and an operator's cap is one of
its inputs, reached through :class:`csms.operations.caps.CapKeeper`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from csms.domain.tokens import IdToken, TokenListing

from .results import CommandResult

#: Header ``csms station`` and ``csms token`` send, so that the event log tells their changes from other API
#: clients' (a label, not a credential: only the operator token's holder gets that far).
CLIENT_HEADER = "X-CSMS-Client"


class StationCommander(Protocol):
    async def execute(self, station_id: str, command: str, body: Any, by: str) -> CommandResult:
        """Sends ``command`` with ``body`` (its JSON arguments) to the station and returns its answer.

        ``by`` says who asked ("api 10.0.0.5", "cli") for the event log. Raises a
        :class:`~.results.CommandError` subclass when there is no answer to give."""
        ...


class TokenAdmin(Protocol):
    """The id tokens, as the write API changes them (:class:`csms.runtime.tokens.TokenBook` implements it).

    Changes raise :class:`~csms.domain.tokens.TokenError` (``field`` names what to fix) or
    :class:`~csms.domain.tokens.TokenNotFound`; ``by`` says who asked, for the event log."""

    def list_tokens(self, organisation: str | None = None) -> list[TokenListing]: ...
    def get_token(self, organisation: str, token: str) -> TokenListing: ...
    async def put_token(self, organisation: str, token: str, *, by: str, status: str = "Accepted",
                        expiry: datetime | None = None, parent: str | None = None,
                        concurrent: bool = False) -> IdToken: ...
    async def block_token(self, organisation: str, token: str, *, by: str) -> IdToken: ...
    async def unblock_token(self, organisation: str, token: str, *, by: str) -> IdToken: ...
    async def delete_token(self, organisation: str, token: str, *, by: str) -> None: ...
