"""The bus between ``csms serve`` roles: gateways hold the stations' websockets, controllers balance and deliver.

A gateway publishes each station's state (with the event that changed it) and runs the commands controllers
send to its stations' links; a controller mirrors every station's state into its own SiteState and drives each
station through a :class:`~csms.bus.remote.RemoteLink`, which implements the same
:class:`~csms.domain.link.StationLink` port as the real OCPP session. Everything crosses one MQTT 5 broker under
one prefix (:mod:`.topics`). The operator's commands to stations, asked of a controller, go the same way to the
gateway holding the station, which runs them as its own (:mod:`.operator_remote`, :mod:`.operator_executor`).

Pure parts (no loop, no MQTT), property-tested: :mod:`.wire` (strict JSON reading), :mod:`.codec` (station
messages, node records), :mod:`.commands` (commands and replies), :mod:`.operator_messages` (the operator's
commands and replies), :mod:`.fencing` (which commands may run), :mod:`.mirror` (replaying station messages into
a SiteState). The MQTT parts: :mod:`.connection` (one client kept connected), :mod:`.gateway`
(:class:`GatewayBridge`), :mod:`.controller` (:class:`ControllerBus`) and :mod:`.remote` (:class:`RemoteLink`),
with :mod:`.executor` and :mod:`.queues` (a gateway's commands, one at a time per station).
"""
