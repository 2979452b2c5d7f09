"""The demo page against a server with APP_API_KEYS: it asks for the key and then uses it."""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from playwright.sync_api import Page, Request, expect

from tests.api.conftest import REPO, Server

pytestmark = pytest.mark.slow

Uvicorn = Callable[..., AbstractContextManager[Server]]
KEY = "demo-key-0123456789"
NORTHWIND = "How many battery-electric trucks did Northwind have at the end of 2024?"


def test_the_page_asks_for_a_key_and_sends_it(uvicorn: Uvicorn, page: Page, tmp_path: Path) -> None:
    requests: list[Request] = []
    page.on("request", lambda request: requests.append(request))  # noqa: PLW0108 - playwright cannot wrap a bound builtin
    with uvicorn(
        APP_BASE_DIR=str(REPO), APP_OUTPUT_DIR=str(tmp_path / "output"), APP_API_KEYS=KEY
    ) as server:
        page.goto(server.base_url + "/demo/")
        card = page.get_by_test_id("auth")
        expect(card).to_be_visible()  # the list of runs answered 401
        expect(page.get_by_test_id("auth-error")).to_contain_text("needs an API key")

        page.get_by_test_id("api-key").fill("wrong")
        page.get_by_test_id("save-key").click()
        expect(card).to_be_visible()
        expect(page.get_by_test_id("auth-error")).to_contain_text("not accepted")

        page.get_by_test_id("api-key").fill(KEY)
        page.get_by_test_id("save-key").click()
        expect(card).to_be_hidden()
        page.get_by_test_id("question").fill(NORTHWIND)
        page.get_by_test_id("start").click()
        expect(page.get_by_test_id("run")).to_have_attribute("data-ready", "true", timeout=20_000)
        expect(page.get_by_test_id("run-status")).to_have_text(re.compile(r"^completed"))
        expect(page.get_by_test_id("answer")).to_contain_text("186")
        expect(card).to_be_hidden()

    posts = [r for r in requests if r.method == "POST" and r.url.endswith("/api/v1/runs")]
    assert posts
    assert posts[-1].headers.get("authorization") == f"Bearer {KEY}"
    streams = [r.url for r in requests if "/events" in r.url]
    assert streams
    assert all(url.endswith(f"/events?access_token={KEY}") for url in streams), streams
