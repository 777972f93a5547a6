"""The commissioning check: does the site's wiring match the config?

Pure inference (:mod:`.model`, :mod:`.measure`, :mod:`.inference`, :mod:`.report`, :mod:`.passive`): no OCPP,
sockets, storage or event loop, and time is an input. The orchestrator that releases one charger at a time on a
running central system is :mod:`csms.runtime.commissioning`.
"""
