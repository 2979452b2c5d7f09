"""Property-based fuzzing of the app's own OpenAPI schema (schemathesis 4.x, in process).

Every operation of ``/openapi.json`` gets generated requests, valid (positive) and invalid
(negative); each response must not be a 5xx and must match what the schema documents
(status code, content type, body). The app runs over a base directory of its own with the
gated test pipeline, whose runs (no gate registered) complete at once. schemathesis starts
the app's lifespan itself and hands its state to every request, so ``request.state`` holds
the store and the executor as under a real server.

The tests drive hypothesis directly (``operation.as_strategy()``) rather than through
``schemathesis.pytest.from_fixture``: its lazy schema reads ``Function._nodeid``, which
pytest 9 no longer has.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi as schemathesis_asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.api.main import create_app
from tests.api.conftest import Settings

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
MAX_EXAMPLES = 25


@pytest.fixture
def api_schema(settings: Settings) -> Iterator[Any]:
    # A fuzzed POST queues a run: a deep queue keeps most of them 202 (429 is documented too).
    app = create_app(settings(max_queued=1000), demo_dir=None)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    try:
        yield schema
    finally:
        # schemathesis keeps a started lifespan until the interpreter exits; stop it with the
        # test, so that no worker thread or output watcher outlives the base directory.
        schemathesis_asgi.shutdown_lifespans()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_conforms_to_the_schema(
    api_schema: Any, base_dir: Path, mode: GenerationMode
) -> None:
    failures: list[str] = []
    labels: list[str] = []
    unsatisfiable: list[str] = []
    for result in api_schema.get_all_operations():
        operation = result.ok()  # raises on a part of the schema schemathesis cannot read
        labels.append(operation.label)

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            response = case.call()
            case.validate_response(response, checks=CHECKS)

        try:
            check()
        except Unsatisfiable:
            # Negative mode on an operation with nothing to break: a free-form string path
            # parameter (run_id) or no parameters at all. The positive mode covers it.
            assert mode is GenerationMode.NEGATIVE, operation.label
            unsatisfiable.append(operation.label)
        except Exception as exc:  # one operation's failure must not hide the others'
            failures.append(f"{operation.label}: {exc}")
    assert "POST /api/v1/runs" in labels, labels
    assert "POST /api/v1/runs" not in unsatisfiable
    assert "GET /api/v1/runs/{run_id}/events" in labels, labels
    if mode is GenerationMode.POSITIVE:  # valid bodies were accepted: runs were really made
        assert any((base_dir / "output").iterdir())
    assert not failures, "\n\n".join(failures)
