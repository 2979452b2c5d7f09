"""An axe-core audit of the demo page after a run, on a desktop and a phone, and keyboard use."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, ViewportSize, expect

from tests.api.conftest import REPO, Server
from tests.web.conftest import DESKTOP, PHONE

pytestmark = pytest.mark.slow

Uvicorn = Callable[..., AbstractContextManager[Server]]
AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
HARBOR = "What are the main climate initiatives of Harbor City Council?"


@pytest.fixture
def audited(browser: Browser) -> Iterator[Callable[[ViewportSize], Page]]:
    """Pages whose CSP lets the test inject axe-core (the page's own CSP forbids it)."""
    contexts = []

    def make(viewport: ViewportSize) -> Page:
        context = browser.new_context(viewport=viewport, bypass_csp=True)
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


def _violations(page: Page) -> list[dict[str, Any]]:
    page.add_script_tag(path=str(AXE))
    found: list[dict[str, Any]] = page.evaluate(
        """async () => {
            const result = await axe.run(document, {
              runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa",
                                                 "best-practice"] },
            });
            return result.violations.map((v) => ({
              id: v.id, impact: v.impact, help: v.help,
              nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" ")),
            }));
        }"""
    )
    return found


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_no_serious_violation_after_a_run(
    uvicorn: Uvicorn,
    audited: Callable[[ViewportSize], Page],
    tmp_path: Path,
    viewport: ViewportSize,
) -> None:
    with uvicorn(APP_BASE_DIR=str(REPO), APP_OUTPUT_DIR=str(tmp_path / "output")) as server:
        page = audited(viewport)
        page.goto(server.base_url + "/demo/")
        page.get_by_test_id("question").fill(HARBOR)
        page.get_by_test_id("start").click()
        expect(page.get_by_test_id("run")).to_have_attribute("data-ready", "true")
        expect(page.get_by_test_id("runs").locator("li")).not_to_have_count(0)
        violations = _violations(page)
    # Moderate ones too: today there are none, and a new one should be a decision.
    assert violations == [], violations
