"""OCPP-J for the central system: a sans-I/O protocol (:mod:`.protocol`), a thin asyncio connection
(:mod:`.connection`), and per-version inbound handlers and outbound commands (:mod:`.v16`, :mod:`.v201`),
composed into one :class:`.station.Station` per connected station."""
