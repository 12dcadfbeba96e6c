"""The HTTP entrypoint (FastAPI)."""
