"""Running the central system as several processes (issue 17): which controller leads each load-balancer group.

:mod:`.lease` is the pure policy (time is an input); :mod:`.spread` the pure rule that spreads the groups among
the live controllers; :mod:`.leadership` runs both against the ``group_leases`` and ``controllers`` tables of
:mod:`csms.storage.leases`.
"""
