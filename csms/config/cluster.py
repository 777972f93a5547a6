"""``[cluster]``: how this process names itself on the bus between roles, and under which topic prefix.

The broker is the ``[mqtt]`` section's (the same host, credentials and TLS as the meters'). Each process needs a
node name no other process on the same prefix uses: a gateway's commands are addressed to it, and a
controller's answers come back to it. The default, ``<hostname>-<pid>``, is unique on a host and changes on a
restart, which the controllers read as "that gateway's old sessions are gone"; a fixed name is fine too.
"""

from __future__ import annotations

import os
import re
import socket

from pydantic import Field, field_validator

from meter_gateway.config import StrictModel

NODE_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
#: One topic level of a prefix: no separator, no MQTT wildcard.
PREFIX_LEVEL_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def default_node() -> str:
    """``<hostname>-<pid>``, with any character a node name may not hold replaced by "-"."""
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:48] or "csms"
    return f"{host}-{os.getpid()}"


class ClusterConfig(StrictModel):
    #: This process's name on the bus: letters, digits, ".", "_", "-" (it is one MQTT topic level).
    node: str = Field(default_factory=default_node)
    #: The first level(s) of every bus topic, e.g. "csms" or "site7/csms"; sites sharing a broker need their own.
    prefix: str = "csms"

    @field_validator("node")
    @classmethod
    def _node(cls, v: str) -> str:
        if not NODE_RE.match(v):
            raise ValueError("node must be 1-64 letters, digits, '.', '_' or '-' (it is one MQTT topic level: "
                             "no '/', '+' or '#')")
        return v

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        levels = v.split("/")
        if len(v) > 128 or not all(PREFIX_LEVEL_RE.match(level) for level in levels):
            raise ValueError('prefix must be topic levels of letters, digits, ".", "_" or "-" joined by "/", e.g. '
                             '"csms" or "site7/csms" (no leading or trailing "/", no "+" or "#")')
        return v
