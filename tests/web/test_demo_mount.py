"""create_app mounts web-demo/ at /demo/ when it exists, and starts without it."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from app.api.main import DEMO_DIR, create_app
from app.config import AppConfig


def _config(tmp_path: Path) -> AppConfig:
    return AppConfig(base_dir=tmp_path, output_dir=tmp_path / "output", llm_provider="extractive")


def test_bundled_demo_folder_is_found_beside_the_package() -> None:
    assert (DEMO_DIR / "index.html").is_file()
    assert DEMO_DIR.parent == Path(__file__).resolve().parents[2]


def test_missing_demo_folder_is_not_mounted(tmp_path: Path) -> None:
    app = create_app(_config(tmp_path), demo_dir=tmp_path / "no-web-demo")
    paths = {getattr(route, "path", None) for route in app.routes}
    assert not paths & {"/demo", "/demo/"}
    client = TestClient(app)  # no lifespan: only the static routes are asked
    assert client.get("/demo/").status_code == 404


def test_demo_folder_is_served_with_index_and_redirect(tmp_path: Path) -> None:
    demo = tmp_path / "page"
    demo.mkdir()
    (demo / "index.html").write_text("<!doctype html><title>demo</title>")
    client = TestClient(create_app(_config(tmp_path), demo_dir=demo))
    redirect = client.get("/demo", follow_redirects=False)
    assert redirect.status_code == 307
    assert redirect.headers["location"] == "/demo/"
    page = client.get("/demo/")
    assert page.status_code == 200
    assert "<title>demo</title>" in page.text
    assert client.get("/demo/missing.js").status_code == 404
