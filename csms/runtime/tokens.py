"""The operator's id tokens at run time: list, get, put, block, unblock, delete - stored, logged, in force at once.

:class:`TokenBook` is what the operator HTTP API and the CLI call (``app.tokens`` on a running
:class:`~csms.runtime.app.CentralSystemApp`). The config's ``[[id_tokens]]`` are the seed; a change made here
overrides the config entry for that token, is written to the ``id_tokens`` table with an event-log entry
naming who asked (``by``), and survives a restart. The next Authorize, StartTransaction or TransactionEvent
gets the new answer; nothing is pushed to chargers (their local lists and caches are theirs to refresh).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from csms.domain.authorization import Authorizer
from csms.domain.tokens import (IdToken, TokenError, TokenListing, TokenNotFound, TokenStatus, parent_problem,
                                token_problem)
from csms.storage.database import Storage
from csms.storage.tokens import save_token, stored_tokens


class TokenBook:
    def __init__(self, authorizer: Authorizer, storage: Storage, clock: Callable[[], float]):
        self._auth = authorizer
        self._storage = storage
        self._clock = clock
        self._runtime: set[tuple[str, str]] = set()
        self._lock = asyncio.Lock()  # a block/unblock reads the entry it changes: one change at a time
        #: Called with the organisation after each change is in force (the local lists follow it).
        self.observers: list[Callable[[str], None]] = []

    async def load(self) -> int:
        """Puts the stored changes in force over the config (at start-up); returns how many there are."""
        rows = await self._storage.read(stored_tokens)
        for key, entry in rows:
            self._auth.override(key, entry)
            self._runtime.add(key)
        return len(rows)

    # -- reading ----------------------------------------------------------------------------------------------

    def list_tokens(self, organisation: str | None = None) -> list[TokenListing]:
        """Every token in force (of one organisation, or all), by organisation and token."""
        return [self._listing(e) for e in self._auth.entries()
                if organisation is None or e.organisation == organisation]

    def get_token(self, organisation: str, token: str) -> TokenListing:
        """The entry in force; raises :class:`TokenNotFound` when there is none."""
        return self._listing(self._entry(organisation, token))

    # -- changing (each awaits the commit, then the change is in force) ---------------------------------------

    async def put_token(self, organisation: str, token: str, *, by: str,
                        status: TokenStatus | str = TokenStatus.ACCEPTED, expiry: datetime | None = None,
                        parent: str | None = None, concurrent: bool = False) -> IdToken:
        """Creates the token or replaces its whole entry (fields not given take their defaults)."""
        entry = self._checked(organisation, token, by, status, expiry, parent, concurrent)
        async with self._lock:
            await self._save(entry.key, entry, by, "id_token_put", status=entry.status.value,
                             expiry=entry.expiry, parent=entry.parent, concurrent=entry.concurrent)
        return entry

    async def block_token(self, organisation: str, token: str, *, by: str) -> IdToken:
        """Blocked from now on. A token with no entry gets one (Blocked), so a card can be refused in an
        ``accept-all`` organisation too."""
        self._check_who(by)
        async with self._lock:
            old = self._auth.entry(organisation, token)
            if old is None:
                entry = self._checked(organisation, token, by, TokenStatus.BLOCKED, None, None, False)
            else:
                entry = IdToken(old.organisation, old.token, TokenStatus.BLOCKED, old.expiry, old.parent,
                                old.concurrent)
            await self._save(entry.key, entry, by, "id_token_blocked")
        return entry

    async def unblock_token(self, organisation: str, token: str, *, by: str) -> IdToken:
        """Accepted again (expiry, parent and concurrency kept); raises :class:`TokenNotFound` when unknown."""
        self._check_who(by)
        async with self._lock:
            old = self._entry(organisation, token)
            entry = IdToken(old.organisation, old.token, TokenStatus.ACCEPTED, old.expiry, old.parent, old.concurrent)
            await self._save(entry.key, entry, by, "id_token_unblocked")
        return entry

    async def delete_token(self, organisation: str, token: str, *, by: str) -> None:
        """Forgets the token (a config entry stays deleted across restarts until put again); raises
        :class:`TokenNotFound` when unknown. In a ``list`` organisation it is then Invalid/Unknown."""
        self._check_who(by)
        async with self._lock:
            self._entry(organisation, token)
            await self._save((organisation, token), None, by, "id_token_deleted")

    # -- inside -----------------------------------------------------------------------------------------------

    def _entry(self, organisation: str, token: str) -> IdToken:
        entry = self._auth.entry(organisation, token)
        if entry is None:
            raise TokenNotFound(f"no id token {token!r} in organisation {organisation!r}")
        return entry

    def _listing(self, entry: IdToken) -> TokenListing:
        return TokenListing(entry, "runtime" if entry.key in self._runtime else "config")

    @staticmethod
    def _check_who(by: str) -> None:
        if not by or not by.strip():
            raise TokenError("by", "name who asked for the change (an operator or API user); it goes to the event log")

    def _checked(self, organisation: str, token: str, by: str, status: TokenStatus | str, expiry: datetime | None,
                 parent: str | None, concurrent: bool) -> IdToken:
        self._check_who(by)
        if organisation not in self._auth.organisations:
            raise TokenError("organisation", f"unknown organisation {organisation!r}; organisations come from "
                                             "[[organisations]] in the config")
        why = token_problem(token)
        if why is not None:
            raise TokenError("token", why)
        try:
            status = TokenStatus(status)
        except ValueError:
            raise TokenError("status", f"{status!r} is not one of Accepted, Blocked (Expired follows from the "
                                       "expiry, ConcurrentTx from running transactions)") from None
        if expiry is not None and not isinstance(expiry, datetime):
            raise TokenError("expiry", f"expected a date and time, got {type(expiry).__name__}")
        why = parent_problem(organisation, parent, (e.key for e in self._auth.entries()))
        if why is not None:
            raise TokenError("parent", why)
        return IdToken(organisation, token, status, expiry, parent, bool(concurrent))

    async def _save(self, key: tuple[str, str], entry: IdToken | None, by: str, kind: str, **detail: object) -> None:
        await self._storage.write(save_token(key, entry, self._clock(), by, kind, **detail))
        self._auth.override(key, entry)
        self._runtime.add(key)
        for observer in self.observers:
            observer(key[0])
