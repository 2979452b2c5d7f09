"""Screenshots of the demo page in four states, at 1280x800 and on a 390x844 phone.

    .venv/bin/python web-demo/take_screenshots.py [--question "..."] [--no-sql]

Starts uvicorn servers on free ports over the bundled documents (runs and index in a
temporary folder) and drives the page in Debian's Chromium:

- ``done``: a real run of ``--question`` (also written as desktop.png / phone.png, the
  README's pictures, and *-full.png with the whole page, not kept in git);
- ``gap``: a question the documents do not answer;
- ``running``: a run held half-way with part of its answer streamed (the test suite's
  file-gated pipeline, steered through files in output/<run_id>/);
- ``error``: a run whose model server cannot be reached.

Writes web-demo/screenshots/{desktop,phone}-{done,gap,running,error}.png.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from playwright.sync_api import Page, ViewportSize, expect, sync_playwright

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-gpu",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
QUESTION = "What are the main climate initiatives of Harbor City Council?"
GAP_QUESTION = "How many electric ferries does Verdant Foods Cooperative operate?"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_healthy(base_url: str, process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"uvicorn exited with {process.returncode}")
        try:
            if httpx.get(base_url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit("uvicorn did not become healthy")


def run_question(page: Page, base_url: str, question: str, sql: bool) -> None:
    page.goto(base_url + "/demo/")
    page.get_by_test_id("question").fill(question)
    if sql:
        page.get_by_test_id("enable-sql").check(force=True)
    page.get_by_test_id("start").click()
    expect(page.get_by_test_id("run")).to_have_attribute("data-ready", "true", timeout=30_000)


def start_running(page: Page, base_url: str, output: Path) -> None:
    """A run held at its gate with the first pieces of its answer streamed."""
    page.goto(base_url + "/demo/")
    page.get_by_test_id("question").fill("How is Northwind electrifying its truck fleet?")
    page.get_by_test_id("start").click()
    expect(page.get_by_test_id("run-status")).to_have_attribute("data-status", "running")
    run_id = page.get_by_test_id("run-id").inner_text()
    for n in range(1, 4):
        (output / run_id / f"delta-{n}").touch()
    expect(page.get_by_test_id("answer")).to_contain_text("Piece 3.")


@contextmanager
def server(tmp: Path, name: str, **env_overrides: str) -> Iterator[tuple[str, Path]]:
    """uvicorn on a free port over the bundled documents; yields (base URL, output folder)."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    output = tmp / name / "output"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APP_", "OPENAI_"))}
    env.update(APP_BASE_DIR=str(REPO), APP_OUTPUT_DIR=str(output), **env_overrides)
    command = [sys.executable, "-m", "uvicorn", "app.api.main:app", "--port", str(port)]
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_healthy(base_url, process)
        yield base_url, output
    finally:
        process.terminate()
        process.wait(timeout=15)


VIEWPORTS: dict[str, ViewportSize] = {
    "desktop": {"width": 1280, "height": 800},
    "phone": {"width": 390, "height": 844},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--question", default=QUESTION)
    parser.add_argument("--no-sql", action="store_true", help="do not query the tables")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as driver:
        tmp = Path(folder)
        browser = driver.chromium.launch(
            executable_path=args.chromium, headless=True, args=CHROMIUM_ARGS
        )

        def shoot(name: str, state: str, act: Callable[[Page], None]) -> Page:
            context = browser.new_context(viewport=VIEWPORTS[name], device_scale_factor=1)
            page = context.new_page()
            act(page)
            page.screenshot(path=OUT / f"{name}-{state}.png")
            print(f"wrote {OUT / name}-{state}.png")
            return page

        with server(tmp, "engine") as (base_url, _):
            for name in VIEWPORTS:
                page = shoot(
                    name,
                    "done",
                    lambda page: run_question(page, base_url, args.question, not args.no_sql),
                )
                page.screenshot(path=OUT / f"{name}.png")
                page.screenshot(path=OUT / f"{name}-full.png", full_page=True)
                page.context.close()
                shoot(
                    name, "gap", lambda page: run_question(page, base_url, GAP_QUESTION, False)
                ).context.close()
        gated = "tests.api.gated_pipeline:file_gated_pipeline"
        with server(tmp, "gated", APP_PIPELINE=gated) as (base_url, output):
            for name in VIEWPORTS:
                shoot(
                    name, "running", lambda page: start_running(page, base_url, output)
                ).context.close()
        unreachable = {"APP_LLM_PROVIDER": "openai", "APP_LLM_BASE_URL": "http://127.0.0.1:9/v1",
                       "APP_LLM_MAX_RETRIES": "0"}  # fmt: skip
        with server(tmp, "error", **unreachable) as (base_url, _):
            for name in VIEWPORTS:
                shoot(
                    name, "error", lambda page: run_question(page, base_url, QUESTION, False)
                ).context.close()
        browser.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
