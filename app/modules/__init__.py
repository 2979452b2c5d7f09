"""The answer engine: usable without the API (no FastAPI imports anywhere below)."""
