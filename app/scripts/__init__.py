"""Runnable scripts: ``python -m app.scripts.<name>`` (e.g. the pre-frontend smoke test)."""
