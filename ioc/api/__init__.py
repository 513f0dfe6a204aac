"""FastAPI application: REST, the websocket endpoint (delegating to ``streams``), the front end."""
