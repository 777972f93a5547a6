"""What changed between the config in force and a new one, and whether it can change without a restart.

A reload applies a new file as a diff so that what did not change is not touched: an unchanged charger keeps
its connection, its session and its delivery channel; an unchanged group keeps its task and its memory (who
was paused, rotation). Some sections describe how the process itself runs (its sockets, its database, its
meter transport, the delivery's timing): changing them under live sessions would drop them or mix two
settings in one session, so a reload refuses such a file whole and says that section needs a restart.

Everything here is pure: two validated configs in, plain values out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from .errors import Problem
from .site import SiteConfig

T = TypeVar("T")

#: Sections whose change needs ``csms serve`` restarted, with why (what would be dropped or mixed).
RESTART_ONLY: dict[str, str] = {
    "server": "the OCPP listener (address, TLS, security profile, limits) is set when csms serve starts",
    "storage": "the database is opened when csms serve starts",
    "http": "the operator view's address and tokens are set when csms serve starts",
    "gateway": "how meters are read (embedded or over MQTT) is set when csms serve starts",
    "mqtt": "the MQTT connection is set up when csms serve starts",
    "cluster": "the process's node name and topic prefix on the bus are set when csms serve starts",
    "smart_charging": "the delivery's timing applies to every charger's profiles in force",
    "id_tokens": "id tokens change at run time with `csms token ...` (the [[id_tokens]] seed is read at start)",
}


@dataclass(frozen=True)
class Change:
    """Ids added, removed and changed (present in both with different settings) in one list section."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def touched(self) -> frozenset[str]:
        return frozenset(self.added) | frozenset(self.removed) | frozenset(self.changed)

    def summary(self, noun: str) -> list[str]:
        out = []
        for verb, ids in (("added", self.added), ("removed", self.removed), ("changed", self.changed)):
            if ids:
                out.append(f"{noun} {verb}: {', '.join(ids)}")
        return out


def _change(old: Iterable[T], new: Iterable[T], key: Callable[[T], str]) -> Change:
    before = {key(x): x for x in old}
    after = {key(x): x for x in new}
    return Change(
        added=tuple(k for k in after if k not in before),
        removed=tuple(k for k in before if k not in after),
        changed=tuple(k for k in after if k in before and before[k] != after[k]),
    )


@dataclass(frozen=True)
class ConfigDiff:
    organisations: Change = field(default_factory=Change)
    chargers: Change = field(default_factory=Change)
    meters: Change = field(default_factory=Change)
    groups: Change = field(default_factory=Change)
    circuits: Change = field(default_factory=Change)
    #: Why the new file cannot be applied without a restart (one problem per changed restart-only section).
    needs_restart: tuple[Problem, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.organisations or self.chargers or self.meters or self.groups or self.circuits
                    or self.needs_restart)

    def summary(self) -> list[str]:
        return [*self.organisations.summary("organisations"), *self.chargers.summary("chargers"),
                *self.meters.summary("meters"), *self.groups.summary("groups"), *self.circuits.summary("circuits")]


def diff_configs(old: SiteConfig, new: SiteConfig) -> ConfigDiff:
    """The changes from ``old`` to ``new``, and which of them only a restart can apply."""
    restart = tuple(
        Problem(section, f"changed; {why}: restart csms serve to apply it (nothing of this file was applied)")
        for section, why in RESTART_ONLY.items() if getattr(old, section) != getattr(new, section))
    return ConfigDiff(
        organisations=_change(old.organisations, new.organisations, lambda o: o.id),
        chargers=_change(old.chargers, new.chargers, lambda c: c.id),
        meters=_change(old.meters, new.meters, lambda m: m.serial),
        groups=_change(old.load_balancers, new.load_balancers, lambda g: g.id),
        circuits=_change(old.circuits, new.circuits, lambda c: c.id),
        needs_restart=restart,
    )


@dataclass(frozen=True)
class ConfigVersion:
    """Which config is in force: the file's SHA-256, how many times one was put in force, and when (our clock)."""

    digest: str
    number: int
    loaded_at: float
    path: str | None = None

    @property
    def label(self) -> str:
        """Short enough for a dashboard: ``3:1a2b3c4d`` (the third config put in force, its digest's start)."""
        return f"{self.number}:{self.digest[:8]}" if self.digest else str(self.number)  # no file: built in code

    def as_json(self) -> dict[str, object]:
        return {"version": self.label, "number": self.number, "sha256": self.digest, "loaded_at": self.loaded_at,
                "path": self.path}


@dataclass(frozen=True)
class ReloadResult:
    """What a reload did: applied (and what changed) or refused (and every problem, as ``FILE: field: message``)."""

    applied: bool
    version: ConfigVersion
    changes: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()

    def as_json(self) -> dict[str, object]:
        return {"outcome": "applied" if self.applied else "refused", "config": self.version.as_json(),
                "changes": list(self.changes), "problems": list(self.problems)}
