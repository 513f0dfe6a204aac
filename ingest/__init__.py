"""Long-running ingest workers: ``mqtt`` (traffic sensors) and ``rtsp`` (camera health)."""
