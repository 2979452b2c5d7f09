"""Services own state and rules; routes only call them (no FastAPI imports here)."""
