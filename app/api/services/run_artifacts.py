"""Reading what a finished run wrote: final.md and context_bundle.json."""

from __future__ import annotations

import json
from typing import Any

from app.api.services.errors import ArtifactMissing, NoOutput, RunNotFinished
from app.api.services.run_store import RunState, Store


def _check(state: RunState) -> None:
    if not state.terminal:
        raise RunNotFinished(state.run_id, state.status)


def read_output(store: Store, run_id: str) -> tuple[RunState, str, str]:
    """(state, markdown, relative path) of a finished run's answer."""
    state = store.get(run_id)
    _check(state)
    text, relative = _read(store, state, "final.md")
    return state, text, relative


def read_context(store: Store, run_id: str) -> tuple[RunState, dict[str, Any], str]:
    """(state, bundle, relative path) of a finished run's evidence."""
    state = store.get(run_id)
    _check(state)
    text, relative = _read(store, state, "context_bundle.json")
    try:
        bundle = json.loads(text)
    except ValueError:
        raise ArtifactMissing(run_id, "context_bundle.json", "is not valid JSON") from None
    if not isinstance(bundle, dict):
        raise ArtifactMissing(run_id, "context_bundle.json", "is not a JSON object")
    return state, bundle, relative


def _read(store: Store, state: RunState, name: str) -> tuple[str, str]:
    path = store.root / state.run_id / name
    relative = store.config.relative(path)
    try:
        return path.read_text(encoding="utf-8"), relative
    except FileNotFoundError:
        if state.status in {"failed", "stopped"}:
            raise NoOutput(state.run_id, state.status, name) from None
        raise ArtifactMissing(state.run_id, name, "is missing") from None
    except (OSError, UnicodeDecodeError):
        raise ArtifactMissing(state.run_id, name, "cannot be read") from None
