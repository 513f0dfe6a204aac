"""Rollups and retention at province scale (docs/rollups.md).

- ``maintain``: incremental maintenance by the ``ioc rollups`` role (received_at watermark;
  late readings and maintenance changes recompute the buckets they touch).
- ``retention``: whole chunks dropped past their limit (``drop_chunks``).
- ``licence``: the TimescaleDB edition, and the continuous aggregates of the 'timescale' one.
- ``read``: the figures the API serves, from rollups (``source``) or raw rows (``raw``).
- ``levels``: pure bucket arithmetic and KPIs.
"""
