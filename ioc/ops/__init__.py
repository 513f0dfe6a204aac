"""Operating a deployment: ``ioc backup``, ``ioc restore`` and ``ioc doctor``.

Backups use PostgreSQL's own tools (``pg_dump -Fc`` / ``pg_restore``) in the way TimescaleDB
documents: restore into a fresh database with the same extension version, between
``timescaledb_pre_restore()`` and ``timescaledb_post_restore()``. See docs/operations.md.
"""
