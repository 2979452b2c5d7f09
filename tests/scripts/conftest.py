"""Fixtures for the smoke script's tests: the API tests' real uvicorn, and a broken server."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest

from tests.api.conftest import (  # the `uvicorn` fixture, re-exported for tests/scripts
    Server,
    uvicorn,
)


@pytest.fixture
def broken_server(
    uvicorn: Callable[..., AbstractContextManager[Server]],
) -> Callable[[str], AbstractContextManager[Server]]:
    """``with broken_server("extra_field") as server``: tests/scripts/broken_app.py in uvicorn."""

    def run(mode: str) -> AbstractContextManager[Server]:
        return uvicorn("tests.scripts.broken_app:app", BROKEN_MODE=mode)

    return run


__all__ = ["broken_server", "uvicorn"]
