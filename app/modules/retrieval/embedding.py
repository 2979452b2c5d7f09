"""Sentence embeddings for the semantic half of retrieval, on the CPU, with no download.

WordLlama (MIT) ships its static token embeddings (16 MB, 256 dimensions) and its tokenizer
inside its wheel: a text's vector is the average of its tokens' vectors, which finds
"subway fare" -> "transit benefit" where no word is shared, in well under a millisecond
per section. Its ``WordLlama.load()`` looks for the tokenizer in a folder the wheel does not
have and then tries the network, which these machines do not reach, so the files are opened
from the package directly.
"""

from __future__ import annotations

import importlib.resources
import logging
import threading
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from wordllama.inference import WordLlamaInference

Vectors = npt.NDArray[np.float32]

MODEL = "wordllama-l2-supercat-256"
DIMENSIONS = 256
_WEIGHTS = "weights/l2_supercat_256.safetensors"
_TOKENIZER = "tokenizers/l2_supercat_tokenizer_config.json"

_lock = threading.Lock()
_model: WordLlamaInference | None = None


class EmbeddingUnavailable(RuntimeError):
    """The embedding model's files could not be loaded."""


def _load() -> WordLlamaInference:
    global _model  # noqa: PLW0603 - one read-only model per process, loaded on first use
    with _lock:
        if _model is None:
            root = logging.getLogger()
            handlers, level = list(root.handlers), root.level
            try:
                # wordllama.inference calls logging.basicConfig() at import time; keep the
                # process's own logging configuration as it was.
                from safetensors import safe_open  # noqa: PLC0415
                from tokenizers import Tokenizer  # noqa: PLC0415
                from wordllama.inference import WordLlamaInference  # noqa: PLC0415
            finally:
                root.handlers[:] = handlers
                root.setLevel(level)
            package = importlib.resources.files("wordllama")
            try:
                tokenizer = Tokenizer.from_file(str(package / _TOKENIZER))
                with safe_open(str(package / _WEIGHTS), framework="np", device="cpu") as f:
                    table = f.get_tensor("embedding.weight")
            except Exception as exc:  # tokenizers and safetensors raise their own types
                raise EmbeddingUnavailable(f"cannot load the embedding model: {exc}") from exc
            _model = WordLlamaInference(table, tokenizer, binary=False)
        return _model


def embed(texts: list[str]) -> Vectors:
    """Unit-length vectors, one row per text (a zero row for a text with no tokens)."""
    if not texts:
        return np.zeros((0, DIMENSIONS), dtype=np.float32)
    raw = _load().embed(texts, norm=False, batch_size=32)
    vectors = np.asarray(raw, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    np.divide(vectors, norms, out=vectors, where=norms > 0)
    return np.nan_to_num(vectors, copy=False)


def to_blob(vector: Vectors) -> bytes:
    """A vector as stored in the index: float16, 512 bytes."""
    return vector.astype(np.float16).tobytes()


def from_blobs(blobs: list[bytes]) -> Vectors:
    """Stored vectors back as one float32 matrix."""
    if not blobs:
        return np.zeros((0, DIMENSIONS), dtype=np.float32)
    return (
        np.frombuffer(b"".join(blobs), dtype=np.float16).reshape(-1, DIMENSIONS).astype(np.float32)
    )
