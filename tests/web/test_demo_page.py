"""The demo page at /demo/, driven in Chromium against real uvicorn and the offline engine."""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Dialog, Page, Request, Route, expect

from tests.api.conftest import BLOCKING, REPO, Server
from tests.web.conftest import DESKTOP, PHONE

pytestmark = pytest.mark.slow

Uvicorn = Callable[..., AbstractContextManager[Server]]

RUN_TIMEOUT_MS = 20_000
HARBOR = "What are the main climate initiatives of Harbor City Council?"
NORTHWIND = "How many battery-electric trucks did Northwind have at the end of 2024?"


def bundled(uvicorn: Uvicorn, tmp_path: Path) -> AbstractContextManager[Server]:
    """The server over the bundled documents, with runs and index in a fresh folder."""
    return uvicorn(APP_BASE_DIR=str(REPO), APP_OUTPUT_DIR=str(tmp_path / "output"))


def ask(page: Page, question: str, *, sql: bool = False, markdown_path: str | None = None) -> None:
    page.get_by_test_id("question").fill(question)
    if sql:
        page.get_by_test_id("enable-sql").check(force=True)  # the box is drawn as a switch
    if markdown_path is not None:
        page.get_by_test_id("markdown-path").select_option(markdown_path)
    page.get_by_test_id("start").click()


def wait_until_finished(page: Page) -> str:
    """Wait (bounded) until the page has shown a terminal run with its answer; its status."""
    run = page.get_by_test_id("run")
    expect(run).to_have_attribute("data-ready", "true", timeout=RUN_TIMEOUT_MS)
    status = page.get_by_test_id("run-status").get_attribute("data-status")
    assert status is not None
    return status


def api_json(server: Server, path: str) -> Any:
    response = httpx.get(server.base_url + path, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def test_demo_is_served_and_redirects(uvicorn: Uvicorn, tmp_path: Path) -> None:
    with bundled(uvicorn, tmp_path) as server:
        redirect = httpx.get(server.base_url + "/demo", timeout=5)
        assert redirect.status_code == 307
        assert redirect.headers["location"] == "/demo/"
        index = httpx.get(server.base_url + "/demo/", timeout=5)
        assert index.status_code == 200
        assert index.headers["content-type"].startswith("text/html")
        assert 'data-testid="ask-form"' in index.text
        for asset in ("app.js", "styles.css", "vendor/marked/marked.umd.js"):
            assert httpx.get(f"{server.base_url}/demo/{asset}", timeout=5).status_code == 200


def test_question_is_answered_live_with_citations_evidence_and_timeline(
    uvicorn: Uvicorn, page: Page, tmp_path: Path
) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    with bundled(uvicorn, tmp_path) as server:
        page.goto(server.base_url + "/demo/")

        # The folder picker lists the documents root and its folders, the default chosen.
        picker = page.get_by_test_id("markdown-path")
        expect(picker.locator("option[value='documents/harbor']")).to_have_count(1)
        expect(picker).to_have_value("documents")

        # A 4xx from POST shows the `message` of the JSON error body: a folder removed
        # after the list was read.
        picker.evaluate("select => select.add(new Option('gone', 'no-such-folder'))")
        ask(page, HARBOR, markdown_path="no-such-folder")
        expected = httpx.post(
            server.base_url + "/api/v1/runs",
            json={"question": HARBOR, "markdown_path": "no-such-folder"},
            timeout=5,
        )
        assert expected.status_code == 422
        form_error = page.get_by_test_id("form-error")
        expect(form_error).to_be_visible()
        expect(form_error).to_contain_text(expected.json()["message"])

        ask(page, HARBOR, sql=True, markdown_path="documents")
        expect(form_error).to_be_hidden()
        assert wait_until_finished(page) in {"completed", "completed_with_gaps"}
        badge = page.get_by_test_id("run-status")
        expect(badge).to_have_text(re.compile(r"^completed"))
        expect(page.get_by_test_id("run-mode")).to_have_attribute("data-mode", "live")
        assert any(url.endswith("/events") for url in requested), requested
        run_id = page.get_by_test_id("run-id").inner_text()
        bundle = api_json(server, f"/api/v1/runs/{run_id}/context")["context_bundle"]

        answer = page.get_by_test_id("answer")
        expect(answer).to_contain_text("24,600 sodium and mercury streetlights")
        expect(answer).to_contain_text("Warm Homes Harbor")

        # Citations link to evidence items, and a click brings the item forward.
        citations = answer.locator("a.cite")
        assert citations.count() >= 5
        for index in range(citations.count()):
            number = citations.nth(index).get_attribute("data-cite")
            assert citations.nth(index).get_attribute("href") == f"#evidence-{number}"
            expect(page.locator(f"#evidence-{number}")).to_have_count(1)
        first = citations.first
        target = page.locator(f"#evidence-{first.get_attribute('data-cite')}")
        first.click()
        expect(target).to_have_class(re.compile(r"\bhighlight\b"))
        expect(target).to_be_in_viewport()

        # The evidence panel: every item, with file paths; SQL items show the query and rows.
        items = page.get_by_test_id("evidence-item")
        expect(items).to_have_count(len(bundle["evidence"]))
        paths = page.get_by_test_id("evidence-path").all_inner_texts()
        assert "harbor/programmes.md" in paths
        assert all(path.endswith(".md") for path in paths)
        # A multi-line item shows its heading path and line range as the bundle has them.
        item = next(
            e
            for e in bundle["evidence"]
            if e["kind"] == "section" and e["line_end"] != e["line_start"]
        )
        shown = page.locator(f"#evidence-{item['id']}")
        expect(shown).to_contain_text(item["heading_path"])
        expect(shown).to_contain_text(f"lines {item['line_start']}–{item['line_end']}")
        sql = page.get_by_test_id("evidence-sql")
        assert sql.count() == len(bundle["sql"]) >= 1
        expect(sql.first).to_contain_text("SELECT")
        expect(page.get_by_test_id("evidence-rows").first.locator("tbody tr")).to_have_count(
            bundle["evidence"][[e["kind"] for e in bundle["evidence"]].index("sql")]["row_count"]
        )

        # The timeline: one bar per timed stage, widths proportional to the seconds.
        bars = page.get_by_test_id("timeline-bar")
        expect(bars).to_have_count(len(bundle["timings"]))
        widths = {
            bar.get_attribute("data-stage"): bar.locator(".bar-fill").evaluate(
                "node => node.getBoundingClientRect().width"
            )
            for bar in bars.all()
        }
        slowest = max(bundle["timings"], key=bundle["timings"].get)
        assert widths[slowest] == max(widths.values()) > 0

        # On a 390-px phone the panels stack and nothing scrolls sideways.
        page.set_viewport_size(PHONE)
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        answer_box = answer.bounding_box()
        evidence_box = page.get_by_test_id("evidence").bounding_box()
        assert answer_box is not None
        assert evidence_box is not None
        assert evidence_box["y"] >= answer_box["y"] + answer_box["height"]
        page.set_viewport_size(DESKTOP)

        # The run is in the list of recent runs; reopening it from there shows it again.
        page.goto(server.base_url + "/demo/")
        item = page.locator(f'[data-testid="run-item"][data-run-id="{run_id}"]')
        expect(item).to_be_visible()
        expect(page.get_by_test_id("welcome")).to_be_visible()
        item.locator("button").click()
        assert wait_until_finished(page) in {"completed", "completed_with_gaps"}
        expect(page.get_by_test_id("run-question")).to_have_text(HARBOR)
        expect(answer).to_contain_text("24,600")
        expect(item).to_have_class(re.compile(r"\bcurrent\b"))


def _no_event_source(page: Page) -> None:
    page.add_init_script("window.EventSource = undefined;")


def _failing_events(page: Page) -> None:
    def fail(route: Route) -> None:
        route.fulfill(status=503, content_type="text/plain", body="unavailable")

    page.route(re.compile(r"/api/v1/runs/[^/]+/events"), fail)


@pytest.mark.parametrize("break_events", [_no_event_source, _failing_events])
def test_polling_fallback_when_events_are_unavailable(
    uvicorn: Uvicorn, page: Page, tmp_path: Path, break_events: Callable[[Page], None]
) -> None:
    requested: list[str] = []

    def seen(request: Request) -> None:
        requested.append(request.url)

    page.on("request", seen)
    break_events(page)
    with bundled(uvicorn, tmp_path) as server:
        page.goto(server.base_url + "/demo/")
        ask(page, NORTHWIND)
        assert wait_until_finished(page) in {"completed", "completed_with_gaps"}
        expect(page.get_by_test_id("run-mode")).to_have_attribute("data-mode", "polling")
        expect(page.get_by_test_id("answer")).to_contain_text("186 battery-electric trucks")
        assert any(url.endswith("/status") for url in requested), requested
        expect(page.get_by_test_id("evidence-item").first).to_be_visible()


MALICIOUS = """\
# Lantern Festival

The Harbor lantern festival lights 420 solar lanterns along the quay \
<script>window.__pwned = "inline"; alert("inline script")</script> every summer.

<img src=x onerror="window.__pwned = 'img'; alert('img onerror')">

<script>window.__pwned = "block"; alert("block script")</script>

<svg onload="window.__pwned = 'svg'"><circle r="4"></circle></svg>

<iframe srcdoc="<script>parent.__pwned = 'iframe'</script>"></iframe>

<a href="javascript:window.__pwned = 'href'">festival programme</a> and \
<a href="#" onclick="window.__pwned = 'click'">tickets</a>.

## Lantern details

The solar lanterns of the festival charge during the day and glow for six hours.
"""


def test_document_markup_is_rendered_inert(uvicorn: Uvicorn, page: Page, tmp_path: Path) -> None:
    documents = tmp_path / "documents"
    documents.mkdir()
    (documents / "festival.md").write_text(MALICIOUS)
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    with uvicorn(APP_BASE_DIR=str(tmp_path), APP_OUTPUT_DIR=str(tmp_path / "output")) as server:
        page.goto(server.base_url + "/demo/")
        ask(page, "How many solar lanterns does the Harbor lantern festival light?")
        wait_until_finished(page)
        run_id = page.get_by_test_id("run-id").inner_text()
        content = api_json(server, f"/api/v1/runs/{run_id}/output")["content"]
        assert "420 solar lanterns" in content

        answer = page.get_by_test_id("answer")
        expect(answer).to_contain_text("420 solar lanterns")
        evidence = page.get_by_test_id("evidence-list")
        expect(evidence).to_contain_text("420 solar lanterns")
        expect(page.get_by_test_id("evidence-path").first).to_have_text("festival.md")
        assert dialogs == []
        assert page.evaluate("typeof window.__pwned") == "undefined"
        rendered = "#answer, #answer *, #evidence-list, #evidence-list *"
        assert page.locator("#answer script, #evidence-list script").count() == 0
        assert page.locator("#answer iframe, #evidence-list iframe").count() == 0
        handlers = page.evaluate(
            """selector => [...document.querySelectorAll(selector)].flatMap(node =>
                [...node.attributes]
                  .filter(a => a.name.startsWith("on") || /^\\s*javascript:/i.test(a.value))
                  .map(a => node.tagName + " " + a.name))""",
            rendered,
        )
        assert handlers == []
        assert page.locator("script").count() == 3  # the page's own: marked, DOMPurify, app.js


def test_cancel_stops_an_active_run(uvicorn: Uvicorn, page: Page, tmp_path: Path) -> None:
    with uvicorn(
        APP_BASE_DIR=str(REPO), APP_OUTPUT_DIR=str(tmp_path / "output"), APP_PIPELINE=BLOCKING
    ) as server:
        page.goto(server.base_url + "/demo/")
        ask(page, NORTHWIND)
        badge = page.get_by_test_id("run-status")
        expect(badge).to_have_attribute("data-status", "running")
        cancel = page.get_by_test_id("cancel")
        expect(cancel).to_be_visible()
        cancel.click()
        assert wait_until_finished(page) == "stopped"
        expect(badge).to_have_text("stopped")
        expect(cancel).to_be_hidden()
        message = page.get_by_test_id("run-message")
        expect(message).to_be_visible()
        expect(message).to_contain_text("cancelled")
        expect(page.get_by_test_id("run-mode")).to_have_attribute("data-mode", "live")
