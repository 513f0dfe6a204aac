"""The live stream: event fan-out from PostgreSQL LISTEN/NOTIFY to websocket clients."""
