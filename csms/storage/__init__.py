"""What the central system keeps (SQLite by default, or PostgreSQL): the writer and reader, and what it writes
and reads back.

:mod:`.database` holds :class:`~csms.storage.database.Storage` (group-committing writer, reads on the same thread),
:mod:`.sql` the seam every operation is written against (one copy of each query, a dialect per engine),
:mod:`.sqlite` and :mod:`.postgres` the two engines (:mod:`.migrations` the numbered schema both share,
:mod:`.hang` the bound on every wait for a PostgreSQL server),
:mod:`.records` the write operations, one per domain fact, :mod:`.readings` the mains readings' own table,
:mod:`.history` the range queries the operator view serves, and :mod:`.tokens` the id tokens changed at run time.
"""
