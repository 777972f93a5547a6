"""The operator's commands to one station, independent of its OCPP version.

An operator (through the HTTP API or ``csms station``) names a command and its arguments; this package says
which commands exist (:mod:`.catalogue`), what arguments each takes (:mod:`.arguments`), what an answer and a
failure look like (:mod:`.results`) and the port the web layer calls (:mod:`.port`). Turning a command into
OCPP 1.6 or 2.0.1 messages is the OCPP layer's job (:mod:`csms.ocpp.operator` and the versions'
``operations`` modules), so nothing here imports a protocol.
"""
