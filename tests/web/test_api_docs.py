"""/docs and /redoc render in Chromium with every request off the server refused."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, Route, expect

from tests.api.conftest import REPO, Server

pytestmark = pytest.mark.slow

Uvicorn = Callable[..., AbstractContextManager[Server]]


def _offline(page: Page, server: Server) -> list[str]:
    """Refuse every request that does not go to the server; return what was refused."""
    own = urlsplit(server.base_url).netloc
    refused: list[str] = []

    def route(route: Route) -> None:
        if urlsplit(route.request.url).netloc == own:
            route.continue_()
        else:
            refused.append(f"{route.request.resource_type} {route.request.url}")
            route.abort()

    page.route("**/*", route)
    return refused


@pytest.mark.parametrize(
    ("path", "shows"),
    [
        ("/docs", "/api/v1/runs/{run_id}/status"),
        ("/redoc", "Start a run"),
    ],
)
def test_api_docs_render_without_a_network(
    uvicorn: Uvicorn, page: Page, tmp_path: Path, path: str, shows: str
) -> None:
    with uvicorn(APP_BASE_DIR=str(REPO), APP_OUTPUT_DIR=str(tmp_path / "output")) as server:
        refused = _offline(page, server)
        page.goto(server.base_url + path)
        expect(page.get_by_text(shows).first).to_be_visible(timeout=15_000)
    # Nothing the page needs came from elsewhere (ReDoc's bundle still asks for its own
    # "powered by" logo, an image it does without).
    assert [r for r in refused if not r.startswith("image ")] == [], refused
