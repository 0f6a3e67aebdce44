"""The external database (``EXTERNAL_DATABASE_URL``) as the database transport uses it.

``connection``: the Django connection alias, registered (or refreshed) from the setting at run
time. ``schema``: the transport's own tables there (``configsync_ext_*``), created by
``configsync external init`` or on first use, idempotently and safely when several nodes start
at once; never by ``migrate`` (see ``configsync.replication.dbrouter``).
"""
