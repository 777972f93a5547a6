"""The bus's topic names, in one place so that both sides build and parse them the same way.

Every topic starts with the cluster's prefix (``[cluster] prefix``, default "csms"), so that two sites (or a test
and a site) can share one broker without hearing each other:

- ``<prefix>/station/<station_id>``: a gateway's snapshot of one station, retained (what a late controller reads);
- ``<prefix>/cmd/<gateway node>/<station_id>``: a command for the station a gateway holds;
- ``<prefix>/res/<controller node>``: the answers to one controller's commands;
- ``<prefix>/node/<node>``: a process's own record (online, or offline by its Last Will), retained;
- ``<prefix>/op/<gateway node>/<station_id>`` and ``<prefix>/opres/<controller node>``: an operator's command
  forwarded to the gateway that holds the station, and its answers (:mod:`csms.bus.operator_messages`);
- ``<prefix>/oprelay/<station_id>``: an operator's command a gateway got for a station it does not hold, taken by
  one controller (a shared subscription, :attr:`Topics.relays`) and forwarded to the gateway that holds it; the
  answer goes to the asking gateway's ``<prefix>/opres/<node>``.

Station ids may hold no "/" (see ``STATION_ID_RE``) nor, from the bus's point of view, the wildcards "+" and "#";
node names are checked by the config (:mod:`csms.config.cluster`).
"""

from __future__ import annotations

from dataclasses import dataclass

#: The controllers' share name for relayed operator's commands (the prefix in the filter keeps sites apart).
RELAY_SHARE = "csms-controllers"

#: Characters a topic level must not hold: the separator and MQTT's wildcards.
RESERVED = frozenset("/+#")


def valid_level(name: str) -> bool:
    """True if ``name`` can be one topic level: not empty, no separator, no wildcard, no NUL."""
    return bool(name) and not (RESERVED & set(name)) and "\x00" not in name


@dataclass(frozen=True)
class Topics:
    prefix: str = "csms"

    def station(self, station_id: str) -> str:
        return f"{self.prefix}/station/{station_id}"

    @property
    def stations(self) -> str:
        """The filter for every station's snapshot."""
        return f"{self.prefix}/station/+"

    def command(self, node: str, station_id: str) -> str:
        return f"{self.prefix}/cmd/{node}/{station_id}"

    def commands(self, node: str) -> str:
        """The filter for every command sent to gateway ``node``."""
        return f"{self.prefix}/cmd/{node}/+"

    def replies(self, node: str) -> str:
        return f"{self.prefix}/res/{node}"

    def node(self, node: str) -> str:
        return f"{self.prefix}/node/{node}"

    def operator(self, node: str, station_id: str) -> str:
        return f"{self.prefix}/op/{node}/{station_id}"

    def operators(self, node: str) -> str:
        """The filter for every operator's command forwarded to gateway ``node``."""
        return f"{self.prefix}/op/{node}/+"

    def operator_replies(self, node: str) -> str:
        return f"{self.prefix}/opres/{node}"

    def relay(self, station_id: str) -> str:
        return f"{self.prefix}/oprelay/{station_id}"

    @property
    def relays(self) -> str:
        """The filter the controllers share: each relayed command reaches one of them (MQTT 5 shared subscription)."""
        return f"$share/{RELAY_SHARE}/{self.prefix}/oprelay/+"

    def relay_of(self, topic: str) -> str | None:
        """``<prefix>/oprelay/CP1`` → "CP1"."""
        tail = self._tail(topic, "oprelay")
        return tail[0] if tail is not None and len(tail) == 1 and tail[0] else None

    @property
    def nodes(self) -> str:
        return f"{self.prefix}/node/+"

    # -- parsing: the last level(s) after a known head, or None when the topic is not of that kind ----------

    def _tail(self, topic: str, kind: str) -> list[str] | None:
        head = f"{self.prefix}/{kind}/"
        if not topic.startswith(head):
            return None
        return topic[len(head):].split("/")

    def station_of(self, topic: str) -> str | None:
        """``<prefix>/station/CP1`` → "CP1"."""
        tail = self._tail(topic, "station")
        return tail[0] if tail is not None and len(tail) == 1 and tail[0] else None

    def command_of(self, topic: str, kind: str = "cmd") -> tuple[str, str] | None:
        """``<prefix>/cmd/gw-1/CP1`` → ("gw-1", "CP1"); ``kind`` "op" reads an operator's command's topic."""
        tail = self._tail(topic, kind)
        return (tail[0], tail[1]) if tail is not None and len(tail) == 2 and all(tail) else None

    def node_of(self, topic: str) -> str | None:
        tail = self._tail(topic, "node")
        return tail[0] if tail is not None and len(tail) == 1 and tail[0] else None
