"""What the central system keeps on disk (SQLite): the writer and reader, and what it writes and reads back.

:mod:`.database` holds the schema and :class:`~csms.storage.database.Storage` (group-committing writer,
reads on the same thread), :mod:`.records` the write operations, one per domain fact, :mod:`.readings`
the mains readings' own table, :mod:`.history` the range queries the operator view serves, and :mod:`.tokens` the
id tokens changed at run time.
"""
