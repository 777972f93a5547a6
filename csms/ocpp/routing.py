"""Which method answers which OCPP action: ``@on`` marks a handler, ``@after`` a hook run once its reply
is out (BootNotification's, for instance, may set the station up only after it was told it is accepted).

A route table is built once per handler class, not once per message or per connection.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_ON = "__ocpp_on__"
_AFTER = "__ocpp_after__"


def on(action: str, *, skip_schema_validation: bool = False) -> Callable:
    """Marks the method that answers ``action``; its keyword arguments are the payload in snake_case.
    ``skip_schema_validation`` lets vendor payloads through both ways (DataTransfer and the like)."""
    def mark(func: Callable) -> Callable:
        setattr(func, _ON, (getattr(action, "value", action), not skip_schema_validation))
        return func
    return mark


def after(action: str) -> Callable:
    """Marks a method run with the same arguments once the reply to ``action`` has been sent."""
    def mark(func: Callable) -> Callable:
        setattr(func, _AFTER, getattr(action, "value", action))
        return func
    return mark


@dataclass(frozen=True, slots=True)
class Route:
    handler: str  # method names: bound per instance
    validate: bool
    after: str | None
    wants_unique_id: bool  # the handler declares ``call_unique_id``


_TABLES: dict[type, dict[str, Route]] = {}
_VALIDATION: dict[type, dict[str, bool]] = {}


def validation_of(cls: type) -> dict[str, bool]:
    """Which of a handler class's actions have their payloads schema-checked: one table per class, shared by
    every connection of its version (a dict per station would be 1 KB each)."""
    table = _VALIDATION.get(cls)
    if table is None:
        table = _VALIDATION[cls] = {action: route.validate for action, route in routes_of(cls).items()}
    return table


def routes_of(cls: type) -> dict[str, Route]:
    """The route table of a handler class (every ``@on`` and ``@after`` method, inherited ones included)."""
    table = _TABLES.get(cls)
    if table is None:
        handlers: dict[str, tuple[str, bool, bool]] = {}
        hooks: dict[str, str] = {}
        for name, member in inspect.getmembers(cls, callable):
            if (mark := getattr(member, _ON, None)) is not None:
                action, validate = mark
                wants = "call_unique_id" in inspect.signature(member).parameters
                handlers[action] = (name, validate, wants)
            if (hook := getattr(member, _AFTER, None)) is not None:
                hooks[hook] = name
        table = _TABLES[cls] = {action: Route(name, validate, hooks.get(action), wants)
                                for action, (name, validate, wants) in handlers.items()}
    return table


def invoke(method: Callable, payload: dict[str, Any], unique_id: str, wants_unique_id: bool) -> Any:
    return method(**payload, call_unique_id=unique_id) if wants_unique_id else method(**payload)
