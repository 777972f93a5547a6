"""Running the central system as several processes (issue 17): which controller leads each load-balancer group.

:mod:`.lease` is the pure policy (time is an input); :mod:`.leadership` runs it against the ``group_leases``
table of :mod:`csms.storage.leases`.
"""
