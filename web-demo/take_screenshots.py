"""Screenshots of the demo page after a real run, at 1280x800 and on a 390x844 phone.

    .venv/bin/python web-demo/take_screenshots.py [--question "..."] [--no-sql]

Starts uvicorn on a free port over the bundled documents (runs and index in a temporary
folder), asks the question through the page in Debian's Chromium and writes
web-demo/screenshots/{desktop,phone}.png (the first screen) and *-full.png (the whole page).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import Page, expect, sync_playwright

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--question", default=QUESTION)
    parser.add_argument("--no-sql", action="store_true", help="do not query the tables")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("APP_", "OPENAI_"))}
        env.update(APP_BASE_DIR=str(REPO), APP_OUTPUT_DIR=str(Path(tmp) / "output"))
        command = [sys.executable, "-m", "uvicorn", "app.api.main:app", "--port", str(port)]
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            wait_healthy(base_url, process)
            with sync_playwright() as driver:
                browser = driver.chromium.launch(
                    executable_path=args.chromium, headless=True, args=CHROMIUM_ARGS
                )
                for name, viewport in (
                    ("desktop", {"width": 1280, "height": 800}),
                    ("phone", {"width": 390, "height": 844}),
                ):
                    context = browser.new_context(viewport=viewport, device_scale_factor=1)
                    page = context.new_page()
                    run_question(page, base_url, args.question, not args.no_sql)
                    page.screenshot(path=OUT / f"{name}.png")
                    page.screenshot(path=OUT / f"{name}-full.png", full_page=True)
                    context.close()
                    print(f"wrote {OUT / name}.png and {name}-full.png")
                browser.close()
        finally:
            process.terminate()
            process.wait(timeout=15)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
