"""Pick the writer the configuration asks for."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.config import AppConfig
from app.modules.llm.base import AnswerWriter
from app.modules.llm.extractive import ExtractiveWriter

if TYPE_CHECKING:
    from app.modules.llm.openai_provider import PayloadLog


def make_writer(config: AppConfig, *, payload_log: PayloadLog | None = None) -> AnswerWriter:
    if config.effective_provider() == "extractive":
        return ExtractiveWriter()
    # Imported only when a model is configured: the openai package takes longer to import
    # than the rest of the server together (0.7 s here), and the default never needs it.
    from app.modules.llm.openai_provider import OpenAIWriter  # noqa: PLC0415

    return OpenAIWriter(
        model=config.llm_model,
        base_url=config.llm_base_url,
        api_key=config.llm_api_key.get_secret_value() if config.llm_api_key else None,
        timeout_s=config.llm_timeout_s,
        max_retries=config.llm_max_retries,
        temperature=config.llm_temperature,
        max_tokens=config.llm_max_tokens,
        payload_log=payload_log,
    )
