"""Any OpenAI-compatible chat server (OpenAI, vLLM, Ollama, llama.cpp, LM Studio) as writer."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from app.modules.evidence import AnswerBrief
from app.modules.llm.base import LLMError, WriterStopped

if TYPE_CHECKING:
    # The openai package takes half a second to import: a server on the offline writer
    # never pays it, and one with a model pays it when the first run writes (OpenAIWriter).
    import openai
    from openai.types.chat import ChatCompletionMessageParam

PayloadLog = Callable[[str, dict[str, Any]], None]

SYSTEM_PROMPT = """\
You answer questions about a set of documents, using only the numbered evidence given.
Rules:
- Cite every statement with the number of the evidence it comes from, like [2] or [1][3].
- Use only the evidence numbers listed. Never invent facts, numbers or sources.
- If the evidence does not answer some part of the question, say so plainly:
  "The documents do not cover ...". Do not guess.
- Answer in concise markdown: the direct answer first, then supporting points.
- Do not add a list of sources; it is added for you."""

EVIDENCE_CHARS = 1800


# How a model says "the documents do not say": the prompt asks for "The documents do not
# cover ...", and models paraphrase it ("the evidence does not mention", "is not covered by
# the documents", "there is no information in the sources"). "the" or "these" must come
# right before the noun, so "the emissions sources do not include" is not a gap statement.
_SOURCE = (
    r"\b(?:the|these|this|provided|given|available)\s+(?:provided\s+|given\s+|available\s+)?"
    r"(?:documents?|documentation|evidence|sources?|context|material|texts?|excerpts?|passages?)\b"
)
_VERB = (
    r"(?:cover|say|mention|contain|provide|specify|include|address|state|describe|give"
    r"|answer|discuss|explain|list|detail|indicate|define)"
)
NOT_COVERED = re.compile(
    "|".join(
        [
            _SOURCE
            + r"[^.?!]{0,60}?\b(?:do(?:es)?\s+not|don['’]t|doesn['’]t|never)\s+(?:\w+\s+){0,2}?"
            + _VERB,
            r"\bnot\s+(?:\w+\s+)?(?:covered|mentioned|addressed|specified|stated|described|found|given|included|discussed)\s+(?:in|by)\s+"
            + _SOURCE,
            r"\bno\s+(?:information|evidence|mention|details?|data)\b[^.?!]{0,60}?\b(?:in|from)\s+"
            + _SOURCE,
            _SOURCE
            + r"[^.?!]{0,40}?\b(?:contains?|provides?|gives?|has|have)\s+no\s+"
            + r"(?:information|mention|details?|data)\b",
        ]
    ),
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def uncovered_statements(answer: str) -> list[str]:
    """The sentences of a model's answer that say the documents do not answer something."""
    found: list[str] = []
    for sentence in _SENTENCE_END.split(answer):
        text = sentence.strip().lstrip("-*> ").strip()
        if text and NOT_COVERED.search(text) and text not in found:
            found.append(text)
    return found


def redact_url(url: str | None) -> str | None:
    """A base URL without any user:password part, fit for logs."""
    if not url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def build_messages(brief: AnswerBrief) -> list[ChatCompletionMessageParam]:
    """The chat messages: rules, then the question, its parts and the numbered evidence."""
    lines = [f"Question: {brief.question}", ""]
    if len(brief.parts) > 1:
        lines.append("The question has these parts:")
        lines.extend(f"{p.id}. {p.text}" for p in brief.parts)
        lines.append("")
    gaps = [p for p in brief.parts if p.gap]
    if gaps:
        # A hint, not a verdict: the model reads the evidence and decides (see
        # ``uncovered_statements``); only names found in no document decide without it.
        lines.append(
            "The search found little evidence for: "
            + "; ".join(p.text for p in gaps)
            + ". Answer it only if the evidence below does; otherwise say it is not covered."
        )
        lines.append("")
    lines.append("Evidence:")
    for item in brief.evidence:
        source = item.label
        lines.append(f"[{item.id}] {source}\n{item.text[:EVIDENCE_CHARS]}\n")
    system: ChatCompletionMessageParam = {"role": "system", "content": SYSTEM_PROMPT}
    user: ChatCompletionMessageParam = {"role": "user", "content": "\n".join(lines)}
    return [system, user]


class OpenAIWriter:
    """Streams the answer from a chat-completions endpoint through the official client."""

    name = "openai"

    def __init__(
        self,
        *,
        model: str,
        base_url: str | None,
        api_key: str | None,
        timeout_s: float,
        max_retries: int,
        temperature: float,
        max_tokens: int,
        payload_log: PayloadLog | None = None,
    ) -> None:
        self.model: str | None = model
        self.base_url = base_url
        self.temperature = temperature
        self.max_tokens = max_tokens
        self._log = payload_log
        import openai  # noqa: PLC0415 - see TYPE_CHECKING above

        # Local servers (Ollama, vLLM) accept any key, but the client insists on one.
        self._client = openai.OpenAI(
            base_url=base_url,
            api_key=api_key or "not-needed",
            timeout=timeout_s,
            max_retries=max_retries,
        )

    def close(self) -> None:
        self._client.close()

    def _where(self) -> str:
        return redact_url(self.base_url) or "the OpenAI API"

    def write(
        self,
        brief: AnswerBrief,
        *,
        on_delta: Callable[[str], None],
        should_stop: Callable[[], bool],
    ) -> str:
        import openai  # noqa: PLC0415 - imported by __init__ already; the name is local

        messages = build_messages(brief)
        model = self.model or ""
        if self._log:
            self._log(
                "request",
                {
                    "base_url": redact_url(self.base_url),
                    "model": self.model,
                    "messages": messages,
                    "temperature": self.temperature,
                    "max_tokens": self.max_tokens,
                    "stream": True,
                },
            )
        pieces: list[str] = []
        finish_reason: str | None = None
        try:
            stream = self._client.chat.completions.create(
                model=model,
                messages=messages,
                temperature=self.temperature,
                max_tokens=self.max_tokens,
                stream=True,
            )
            with stream:
                for chunk in stream:
                    if should_stop():
                        raise WriterStopped
                    if not chunk.choices:
                        continue
                    choice = chunk.choices[0]
                    finish_reason = choice.finish_reason or finish_reason
                    text = choice.delta.content if choice.delta else None
                    if text:
                        pieces.append(text)
                        on_delta(text)
        except openai.APIStatusError as exc:
            raise LLMError(
                f"the model server at {self._where()} answered HTTP {exc.status_code}: "
                f"{_provider_message(exc)}"
            ) from exc
        except openai.APITimeoutError as exc:
            raise LLMError(f"the model server at {self._where()} did not answer in time") from exc
        except openai.APIConnectionError as exc:
            raise LLMError(f"cannot reach the model server at {self._where()}: {exc}") from exc
        except openai.OpenAIError as exc:
            raise LLMError(f"the model server at {self._where()} failed: {exc}") from exc
        answer = "".join(pieces)
        if self._log:
            self._log("response", {"content": answer, "finish_reason": finish_reason})
        if not answer.strip():
            raise LLMError(f"the model at {self._where()} returned an empty answer")
        return answer


def _provider_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
    return exc.message
