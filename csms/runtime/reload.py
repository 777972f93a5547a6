"""``csms reload`` and SIGHUP: the config file read again and put in force whole, or not at all.

The file is read and validated off the event loop with the code ``check-config`` runs
(:func:`csms.config.read_config`), so an operator gets the same messages from both. A file with any problem,
or one that changes a section only a restart can apply (:data:`csms.config.diff.RESTART_ONLY`), changes
nothing: the config in force stays, and the refusal is logged, stored as a ``config_reload_refused`` event
and returned to whoever asked. A valid file is applied as a diff by the app
(:meth:`csms.runtime.app.CentralSystemApp.apply_config`), so nothing that did not change is touched.

Reloads run one at a time (a lock): a SIGHUP arriving during an API-triggered reload waits its turn and
then reads the file as it is by then.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from csms.config import ConfigDiff, ConfigError, ConfigVersion, ReloadResult, SiteConfig, diff_configs, read_config
from csms.storage.database import Storage
from csms.storage.records import log_event

log = logging.getLogger("csms.runtime.reload")


class Reconfigurable(Protocol):
    """What a reload changes: the app, which applies a diff to each of its parts."""

    cfg: SiteConfig

    async def apply_config(self, new: SiteConfig, diff: ConfigDiff) -> None: ...


class ConfigReloader:
    """Reads ``path`` again on request and puts it in force through ``target``; keeps the version in force."""

    def __init__(self, target: Reconfigurable, path: str | Path | None, digest: str, storage: Storage,
                 clock: Callable[[], float]):
        self.target = target
        self.path = None if path is None else Path(path)
        self.storage = storage
        self.clock = clock
        self.version = ConfigVersion(digest, 1, clock(), None if path is None else str(path))
        #: The latest refusal, for the operator view (None: the latest reload was applied, or none was asked).
        self.last_refused: ReloadResult | None = None
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task] = set()

    def status(self) -> dict[str, object]:
        """The version in force and the latest refusal since, as the status API shows them."""
        refused = self.last_refused
        return {**self.version.as_json(),
                "last_refused": None if refused is None else {"problems": list(refused.problems)}}

    def request(self, by: str) -> None:
        """Starts a reload without waiting for it (a signal handler cannot await); :meth:`stop` awaits it."""
        task = asyncio.get_running_loop().create_task(self.reload(by), name=f"config reload ({by})")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        """Lets a reload under way finish (it is short, and half a reload is what it must never leave)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def reload(self, by: str) -> ReloadResult:
        """Reads the file again and applies it whole, or refuses it whole; ``by`` names who asked (logged)."""
        async with self._lock:
            return await self._reload(by)

    async def _reload(self, by: str) -> ReloadResult:
        if self.path is None:
            return await self._refused(by, ["(file): the central system was started without a config file"])
        try:
            new, digest = await asyncio.to_thread(read_config, self.path)
        except ConfigError as err:
            return await self._refused(by, err.lines())
        diff = diff_configs(self.target.cfg, new)
        if diff.needs_restart:
            return await self._refused(by, [f"{self.path}: {p.path}: {p.message}" for p in diff.needs_restart])
        changes = tuple(diff.summary())
        if diff:
            try:
                await self.target.apply_config(new, diff)
            except Exception:
                # A bug, not a bad file: what was applied so far stays, and the operator is told to restart.
                log.exception("config reload (%s): applying %s failed", by, self.path)
                return await self._refused(by, [f"{self.path}: (internal): applying it failed part way; see the log of "
                                          "csms serve and restart it to be sure which config is in force"])
        self.version = ConfigVersion(digest, self.version.number + 1, self.clock(), str(self.path))
        self.last_refused = None
        result = ReloadResult(True, self.version, changes)
        log.info("config reload (%s): %s in force as version %s: %s", by, self.path, self.version.label,
                 "; ".join(changes) or "nothing changed")
        await self.storage.write(log_event("config_reloaded", self.clock(), by=by, version=self.version.label,
                                           sha256=digest, changes=list(changes)))
        return result

    async def _refused(self, by: str, problems: list[str]) -> ReloadResult:
        result = ReloadResult(False, self.version, problems=tuple(problems))
        self.last_refused = result
        log.error("config reload (%s) refused; version %s stays in force:\n  %s", by, self.version.label,
                  "\n  ".join(problems))
        await self.storage.write(log_event("config_reload_refused", self.clock(), by=by,
                                           version=self.version.label, problems=problems))
        return result
