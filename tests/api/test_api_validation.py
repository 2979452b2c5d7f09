"""What POST /api/v1/runs refuses, and that paths in URLs or bodies never leave their folders.

Every refusal is a 422 (or 413 for a body over the cap) with docs/api.md's error body, and leaves
nothing under output/.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.api import gated_pipeline

pytestmark = pytest.mark.anyio

RUNS = "/api/v1/runs"


def _assert_422(response, error) -> dict[str, Any]:
    body: dict[str, Any] = error(response, 422, "validation_error")
    assert isinstance(body["detail"], list), body
    assert body["detail"], body
    for item in body["detail"]:
        assert {"loc", "msg"} <= set(item), item
    return body


def _output_entries(base_dir: Path) -> list[str]:
    output = base_dir / "output"
    return sorted(p.name for p in output.iterdir()) if output.exists() else []


class TestRunId:
    @pytest.mark.parametrize(
        "run_id",
        [
            "../x",
            "a/b",
            ".hidden",
            "-leading-dash",
            "_leading-underscore",
            "x" * 129,
            "nul\x00byte",
            "",
            "white space",
            "trailing-newline\n",
            "back\\slash",
            "..",
        ],
    )
    async def test_refused(self, serve, settings, base_dir, error, run_id: str) -> None:
        async with serve(settings()) as client:
            response = await client.post(RUNS, json={"question": "q?", "run_id": run_id})
            body = _assert_422(response, error)
            assert any(item["loc"][-1] == "run_id" for item in body["detail"]), body
        assert _output_entries(base_dir) == []

    @pytest.mark.parametrize("run_id", ["x" * 128, "A.b_c-1", "0", "run.v2"])
    async def test_accepted(self, serve, settings, wait_for_status, run_id: str) -> None:
        gated_pipeline.gate(run_id).release.set()
        async with serve(settings()) as client:
            response = await client.post(RUNS, json={"question": "q?", "run_id": run_id})
            assert response.status_code == 202, response.text
            assert response.json()["run_id"] == run_id
            await wait_for_status(client, run_id, {"completed"})

    @pytest.mark.parametrize(
        "path",
        [
            "/api/v1/runs/..%2F..%2Fetc/status",
            "/api/v1/runs/..%2F..%2Fetc%2Fpasswd/output",
            "/api/v1/runs/%2e%2e/status",
            "/api/v1/runs/%2E%2E%2Foutput/context",
            "/api/v1/runs/.hidden/status",
            "/api/v1/runs/%00/status",
            "/api/v1/runs/a%5Cb/status",
            "/api/v1/runs/..%2F..%2Fetc",
            "/api/v1/runs/..%2Fx/cancel",
        ],
    )
    async def test_traversal_in_the_url_is_404_or_422(
        self, serve, settings, error, path: str
    ) -> None:
        async with serve(settings()) as client:
            # A run whose folder name the traversal would reach if it were joined blindly.
            assert (await client.post(RUNS, json={"question": "q?", "run_id": "x"})).is_success
            method = "POST" if path.endswith("/cancel") else "GET"
            response = await client.request(method, path)
            assert response.status_code in {404, 422}, response.text
            body = response.json()
            assert {"code", "message"} <= set(body), body


class TestMarkdownPath:
    @pytest.mark.parametrize(
        "markdown_path",
        [
            "../",
            "..",
            "/etc",
            "/",
            "documents/../..",
            "documents/../../etc",
            "documents/..",
            ".",
            "output",
            "documents\\..\\..",
            "documents/\x00",
        ],
    )
    async def test_outside_the_roots_is_422(
        self, serve, settings, base_dir, error, markdown_path: str
    ) -> None:
        async with serve(settings()) as client:
            response = await client.post(
                RUNS, json={"question": "q?", "markdown_path": markdown_path}
            )
            body = _assert_422(response, error)
            assert str(base_dir) not in response.text, body  # no absolute server path
        assert _output_entries(base_dir) == []

    async def test_symlink_out_of_the_documents_is_422(
        self, serve, settings, base_dir, tmp_path_factory, error
    ) -> None:
        outside = tmp_path_factory.mktemp("outside")
        (outside / "secret.md").write_text("# Secret\n")
        (base_dir / "documents" / "escape").symlink_to(outside, target_is_directory=True)
        (base_dir / "documents" / "reports" / "up").symlink_to(base_dir, target_is_directory=True)
        async with serve(settings()) as client:
            for markdown_path in ("documents/escape", "documents/reports/up/output"):
                response = await client.post(
                    RUNS, json={"question": "q?", "markdown_path": markdown_path}
                )
                _assert_422(response, error)
        assert _output_entries(base_dir) == []

    @pytest.mark.parametrize(
        "markdown_path", ["documents/missing", "documents/reports/fleet.md", "nowhere"]
    )
    async def test_missing_folder_is_422(
        self, serve, settings, base_dir, error, markdown_path: str
    ) -> None:
        async with serve(settings()) as client:
            response = await client.post(
                RUNS, json={"question": "q?", "markdown_path": markdown_path}
            )
            _assert_422(response, error)
        assert _output_entries(base_dir) == []

    @pytest.mark.parametrize("kind", ["missing", "file"])
    async def test_a_root_that_is_not_a_folder_is_422(
        self, serve, settings, base_dir, error, kind: str
    ) -> None:
        # A root is checked with one stat, not resolved: it must still be a real folder.
        if kind == "file":
            (base_dir / "extra").write_text("not a folder\n")
        async with serve(settings(documents_roots=["documents", "./extra"])) as client:
            response = await client.post(RUNS, json={"question": "q?", "markdown_path": "extra"})
            body = _assert_422(response, error)
            assert "not a folder" in json.dumps(body), body
        assert _output_entries(base_dir) == []

    async def test_a_root_may_itself_be_a_symlink(
        self, serve, settings, base_dir, tmp_path_factory, wait_for_status
    ) -> None:
        # The operator chose that root: where it points is inside it by definition.
        shared = tmp_path_factory.mktemp("shared-docs")
        (shared / "notes.md").write_text("# Notes\n")
        (base_dir / "shared").symlink_to(shared, target_is_directory=True)
        async with serve(settings(documents_roots=["documents", "shared"])) as client:
            response = await client.post(
                RUNS, json={"question": "q?", "run_id": "ok", "markdown_path": "shared/"}
            )
            assert response.status_code == 202, response.text
            await wait_for_status(client, "ok", {"completed"})
            assert (await client.get(f"{RUNS}/ok")).json()["markdown_path"] == "shared"

    @pytest.mark.parametrize(
        ("markdown_path", "stored"),
        [
            ("documents", "documents"),
            ("documents/reports", "documents/reports"),
            ("documents/reports/", "documents/reports"),
            ("documents/./reports", "documents/reports"),
        ],
    )
    async def test_inside_the_roots_is_accepted(
        self, serve, settings, wait_for_status, markdown_path: str, stored: str
    ) -> None:
        async with serve(settings()) as client:
            response = await client.post(
                RUNS, json={"question": "q?", "run_id": "ok", "markdown_path": markdown_path}
            )
            assert response.status_code == 202, response.text
            await wait_for_status(client, "ok", {"completed"})
            record = (await client.get(f"{RUNS}/ok")).json()
            assert record["markdown_path"] == stored


class TestBody:
    @pytest.mark.parametrize(
        "payload",
        [
            {"question": ""},
            {"question": "   "},
            {"question": "\n\t  \r\n"},
            {"question": "x" * 4001},
            {"question": " " + "x" * 4001 + " "},
            {},
            {"run_id": "no-question"},
            {"question": None},
            {"question": 5},
            {"question": ["a list"]},
            {"question": "q?", "enable_sql": "yes"},
            {"question": "q?", "enable_sql": 1},
            {"question": "q?", "log_llm_payload": "true"},
            {"question": "q?", "run_id": 7},
            {"question": "q?", "markdown_path": None},
            {"question": "q?", "markdown_path": ""},
            {"question": "q?", "unknown": 1},
            {"question": "q?", "runId": "camel"},
        ],
    )
    async def test_invalid_is_422(self, serve, settings, base_dir, error, payload) -> None:
        async with serve(settings()) as client:
            _assert_422(await client.post(RUNS, json=payload), error)
        assert _output_entries(base_dir) == []

    async def test_unknown_field_is_named(self, serve, settings, error) -> None:
        async with serve(settings()) as client:
            response = await client.post(RUNS, json={"question": "q?", "colour": "red"})
            body = _assert_422(response, error)
            assert body["detail"][0]["loc"] == ["body", "colour"]
            assert body["detail"][0]["type"] == "extra_forbidden"
            assert "colour" in body["message"]

    @pytest.mark.parametrize(
        ("content", "content_type"),
        [
            (b'{"question": ', "application/json"),
            (b"{'question': 'single quotes'}", "application/json"),
            (b'{"question": "q?"} trailing', "application/json"),
            (b"[]", "application/json"),
            (b'"just a string"', "application/json"),
            (b"", "application/json"),
            (b"question=q%3F", "application/x-www-form-urlencoded"),
            (b"\xff\xfe\x00garbage", "application/json"),
        ],
    )
    async def test_malformed_body_is_422(
        self, serve, settings, base_dir, error, content: bytes, content_type: str
    ) -> None:
        async with serve(settings()) as client:
            response = await client.post(
                RUNS, content=content, headers={"content-type": content_type}
            )
            _assert_422(response, error)
        assert _output_entries(base_dir) == []

    @pytest.mark.parametrize(
        ("question", "stored"),
        [
            ("x" * 4000, "x" * 4000),
            ("  " + "y" * 4000 + "\n", "y" * 4000),
            ("a", "a"),
            ("  Why?  ", "Why?"),
        ],
    )
    async def test_question_limits_count_after_trimming(
        self, serve, settings, wait_for_status, question: str, stored: str
    ) -> None:
        async with serve(settings()) as client:
            response = await client.post(RUNS, json={"question": question, "run_id": "len"})
            assert response.status_code == 202, response.text
            await wait_for_status(client, "len", {"completed"})
            assert (await client.get(f"{RUNS}/len")).json()["question"] == stored


class TestMessagesForPeople:
    """The `message` of a 422 says what to change in words, not in validator jargon."""

    @pytest.mark.parametrize(
        ("request_kwargs", "message"),
        [
            (
                {"content": b'{"question": ', "headers": {"content-type": "application/json"}},
                "the body is not valid JSON",
            ),
            (
                {"content": b'{"question": "q?"}', "headers": {"content-type": "text/plain"}},
                "send JSON with the header content-type: application/json",
            ),
            ({}, 'the body is empty: send JSON such as {"question": "..."}'),
            ({"json": ["q?"]}, 'the body must be a JSON object such as {"question": "..."}'),
            ({"json": {"question": "   "}}, "question must not be empty"),
            ({"json": {"question": "x" * 4001}}, "question is longer than 4000 characters"),
            ({"json": {"run_id": "r"}}, "question is required"),
            (
                {"json": {"question": "q?", "run_id": "-no good"}},
                "run_id must start with a letter or a digit and have at most 128 letters, "
                "digits, '.', '_' or '-'",
            ),
            (
                {"json": {"question": "q?", "colour": "red"}},
                "'colour' is not a field of this request (the fields: question, run_id, "
                "enable_sql, markdown_path, log_llm_payload)",
            ),
            ({"json": {"question": "q?", "enable_sql": "yes"}}, "enable_sql must be true or false"),
            (
                {"json": {"question": "q?", "markdown_path": None}},
                "markdown_path must be a string; leave it out for the default",
            ),
        ],
    )
    async def test_post(self, serve, settings, error, request_kwargs, message: str) -> None:
        async with serve(settings()) as client:
            body = _assert_422(await client.post(RUNS, **request_kwargs), error)
        assert body["message"] == message

    @pytest.mark.parametrize(
        ("query", "message"),
        [
            ("limit=0", "the query parameter limit must be at least 1"),
            ("limit=x", "the query parameter limit must be a whole number"),
            (
                "cursor=zzz",
                "the query parameter cursor is not one this server gave out "
                "(use next_cursor as given)",
            ),
            (
                "status=done",
                "the query parameter status must be one of queued, running, completed, "
                "completed_with_gaps, failed, stopped",
            ),
        ],
    )
    async def test_list_query(self, serve, settings, error, query: str, message: str) -> None:
        async with serve(settings()) as client:
            body = _assert_422(await client.get(f"{RUNS}?{query}"), error)
        assert body["message"] == message
        assert body["detail"][0]["loc"][0] == "query"

    async def test_idempotency_key_rule_in_words(self, serve, settings, error) -> None:
        async with serve(settings()) as client:
            response = await client.post(
                RUNS, json={"question": "q?"}, headers={"Idempotency-Key": "x" * 256}
            )
            body = _assert_422(response, error)
        assert body["message"] == (
            "the Idempotency-Key header must be 1 to 255 printable ASCII characters"
        )


class TestBodySize:
    async def test_over_the_cap_is_413(self, serve, settings, base_dir, error) -> None:
        async with serve(settings(max_body_bytes=1024)) as client:
            response = await client.post(RUNS, json={"question": "x" * 2000})
            body = error(response, 413, "payload_too_large")
            assert "1024" in body["message"]
        assert _output_entries(base_dir) == []

    async def test_streamed_body_over_the_cap_is_413(
        self, serve, settings, base_dir, error
    ) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            # No Content-Length: the cap has to be enforced while the body arrives.
            yield b'{"question": "'
            for _ in range(8):
                yield b"x" * 256
            yield b'"}'

        async with serve(settings(max_body_bytes=1024)) as client:
            response = await client.post(
                RUNS, content=chunks(), headers={"content-type": "application/json"}
            )
            assert "content-length" not in response.request.headers
            error(response, 413, "payload_too_large")
        assert _output_entries(base_dir) == []

    async def test_under_the_cap_is_accepted(self, serve, settings) -> None:
        async with serve(settings(max_body_bytes=1024)) as client:
            response = await client.post(RUNS, json={"question": "x" * 900})
            assert response.status_code == 202, response.text


class TestOtherErrors:
    async def test_unknown_route_and_method_have_the_error_body(
        self, serve, settings, error
    ) -> None:
        async with serve(settings()) as client:
            error(await client.get("/api/v1/nothing-here"), 404, "not_found")
            error(await client.delete(f"{RUNS}/x/status"), 405, "method_not_allowed")


@pytest.mark.anyio
async def test_a_body_that_is_not_utf8_is_a_422(serve, settings, error) -> None:
    """FastAPI would answer 400 for invalid UTF-8; docs/api.md makes every malformed body a 422."""
    async with serve(settings()) as client:
        response = await client.post(
            "/api/v1/runs",
            content=b'{"question": "\xff"}',
            headers={"content-type": "application/json"},
        )
        body = error(response, 422, "validation_error")
        assert isinstance(body["detail"], list)
