"""Shared fixtures: configurations over real folders, and a real OpenAI-protocol server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.config import AppConfig
from tests.fake_openai import FakeOpenAI

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = REPO / "documents"


@pytest.fixture
def config(tmp_path: Path) -> AppConfig:
    """The bundled documents, with output and index in a fresh folder, offline writer."""
    return AppConfig(
        base_dir=REPO,
        output_dir=tmp_path / "output",
        index_dir=tmp_path / "index",
        markdown_path="documents",
        llm_provider="extractive",
    )


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server
