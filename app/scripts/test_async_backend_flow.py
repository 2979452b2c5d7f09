"""Pre-frontend smoke test (BE-008): drive a running server the way the frontend will.

    python -m app.scripts.test_async_backend_flow [--base-url http://127.0.0.1:8000] \\
        [--question "How many battery-electric trucks did Northwind have?"] [--sse]

Starts a run (``POST /api/v1/runs``), follows it until it is terminal (polling ``/status``
every ``--poll`` seconds, or with ``--sse`` over ``/events``), fetches ``/output`` and
``/context``, and checks an unknown run id answers 404. Every payload is checked against the
v1 contract of docs/api.md (exact key sets, statuses, finish reasons,
timestamps, errors, SSE ids). Every response is saved, numbered in order, as JSON under
``--out`` (default ``output/smoke/<run_id>/``, a git-ignored folder; the last line says where).

Exit codes: 0 the contract holds (one summary line); 1 a contract break or a timeout (the
step and what broke); 2 the server is unreachable, or ``--sse`` without httpx-sse installed.
The whole flow, every wait included, is bounded by ``--timeout`` seconds.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import httpx

if TYPE_CHECKING:
    from httpx_sse import EventSource

API = "/api/v1/runs"
EXIT_OK, EXIT_BROKEN, EXIT_UNREACHABLE = 0, 1, 2
DEFAULT_BASE_URL = "http://127.0.0.1:8000"
DEFAULT_QUESTION = "How many battery-electric trucks did Northwind have at the end of 2024?"
# Under output/, which git ignores: a smoke run leaves nothing to commit by accident.
SMOKE_DIR = Path("output") / "smoke"

# The four v1 payloads (docs/api.md): exactly these keys, no more.
ACCEPTED_KEYS = frozenset({"run_id", "status", "status_url", "output_url", "context_url"})
STATUS_KEYS = frozenset(
    {"run_id", "status", "started_at", "completed_at", "finish_reason", "error"}
)
OUTPUT_KEYS = frozenset({"run_id", "status", "content", "final_output_path"})
CONTEXT_KEYS = frozenset({"run_id", "status", "context_bundle", "context_bundle_path"})
# The SSE additions (docs/api.md, Server-Sent Events).
PROGRESS_KEYS = frozenset({"run_id", "stage", "message", "step", "total_steps"})
DELTA_KEYS = frozenset({"run_id", "text"})
EVENT_NAMES = frozenset({"status", "progress", "answer_delta"})
ERROR_KEYS = frozenset({"code", "message"})

ACTIVE = ("queued", "running")
ANSWERED = ("completed", "completed_with_gaps")
TERMINAL = frozenset({*ANSWERED, "failed", "stopped"})
# docs/api.md, Statuses and finish reasons.
FINISH_REASONS: dict[str, frozenset[str | None]] = {
    "queued": frozenset({None}),
    "running": frozenset({None}),
    "completed": frozenset({"answered"}),
    "completed_with_gaps": frozenset({"answered_with_gaps"}),
    "failed": frozenset({"error", "interrupted"}),
    "stopped": frozenset({"cancelled", "timeout"}),
}
RANK = {"queued": 0, "running": 1, **dict.fromkeys(TERMINAL, 2)}

ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?Z$")
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
SAVED_HEADERS = (
    "content-type",
    "location",
    "retry-after",
    "cache-control",
    "x-accel-buffering",
)


class ContractBroken(Exception):
    """The server broke the contract (or did not finish in time) at ``step``."""

    def __init__(self, step: str, problem: str) -> None:
        super().__init__(f"{step}: {problem}")
        self.step = step
        self.problem = problem


class Unreachable(Exception):
    """Nothing answers at the base URL."""


@dataclass
class Recorder:
    """Numbered JSON files of every response, kept in memory until the folder is known."""

    out: Path | None
    pending: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    count: int = 0

    def save(self, name: str, record: dict[str, Any]) -> None:
        self.count += 1
        filename = f"{self.count:02d}-{name}.json"
        if self.out is None:
            self.pending.append((filename, record))
        else:
            self._write(filename, record)

    def open(self, out: Path) -> None:
        """Choose the folder (once); write what was kept so far."""
        if self.out is None:
            self.out = out
        for filename, record in self.pending:
            self._write(filename, record)
        self.pending.clear()

    def _write(self, filename: str, record: dict[str, Any]) -> None:
        assert self.out is not None
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / filename
        path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        self.written.append(path)


def _headers(response: httpx.Response) -> dict[str, str]:
    return {name: response.headers[name] for name in SAVED_HEADERS if name in response.headers}


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def _short(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "..."


def _exact_keys(step: str, body: Any, keys: frozenset[str], what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ContractBroken(step, f"{what} is not a JSON object: {_short(body)}")
    missing = sorted(keys - body.keys())
    extra = sorted(body.keys() - keys)
    problems = []
    if missing:
        problems.append("missing field(s) " + ", ".join(repr(k) for k in missing))
    if extra:
        problems.append("extra field(s) " + ", ".join(repr(k) for k in extra))
    if problems:
        raise ContractBroken(
            step, f"{what} has {' and '.join(problems)} (expected exactly {sorted(keys)})"
        )
    return body


def _timestamp(step: str, body: dict[str, Any], key: str) -> str | None:
    value = body[key]
    if value is None:
        return None
    if not isinstance(value, str) or not ISO_Z.fullmatch(value):
        raise ContractBroken(step, f"{key!r} is not ISO 8601 UTC ending in Z: {value!r}")
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ContractBroken(step, f"{key!r} is not a valid date and time: {value!r}") from None
    return value


def _error_object(step: str, value: Any, where: str) -> None:
    body = _exact_keys(step, value, ERROR_KEYS, where)
    for key in ERROR_KEYS:
        if not isinstance(body[key], str) or not body[key]:
            raise ContractBroken(step, f"{where}[{key!r}] is not a non-empty string: {body!r}")


def check_status_payload(step: str, body: Any, run_id: str) -> dict[str, Any]:
    """The /status payload (also the data of every SSE ``status`` event)."""
    payload = _exact_keys(step, body, STATUS_KEYS, "status payload")
    if payload["run_id"] != run_id:
        raise ContractBroken(step, f"'run_id' is {payload['run_id']!r}, expected {run_id!r}")
    status = payload["status"]
    if status not in FINISH_REASONS:
        raise ContractBroken(step, f"'status' {status!r} is not one of {sorted(FINISH_REASONS)}")
    started = _timestamp(step, payload, "started_at")
    completed = _timestamp(step, payload, "completed_at")
    reason = payload["finish_reason"]
    if reason not in FINISH_REASONS[status]:
        allowed = sorted(str(r) if r is not None else "null" for r in FINISH_REASONS[status])
        raise ContractBroken(
            step, f"'finish_reason' {reason!r} does not go with status {status!r} ({allowed})"
        )
    if status in ACTIVE and completed is not None:
        raise ContractBroken(step, f"'completed_at' is {completed!r} while {status!r}")
    if status in TERMINAL and completed is None:
        raise ContractBroken(step, f"'completed_at' is null for terminal status {status!r}")
    if status == "running" and started is None:
        raise ContractBroken(step, "'started_at' is null while 'running'")
    if started is not None and completed is not None and completed < started:
        raise ContractBroken(step, f"'completed_at' {completed} is before 'started_at' {started}")
    error = payload["error"]
    if status in (*ACTIVE, *ANSWERED) and error is not None:
        raise ContractBroken(step, f"'error' is {_short(error)} for status {status!r}, not null")
    if status == "failed" and error is None:
        raise ContractBroken(step, "'error' is null for a failed run")
    if error is not None:
        _error_object(step, error, "'error'")
    return payload


def check_transition(step: str, previous: dict[str, Any] | None, current: dict[str, Any]) -> None:
    """Statuses only move forward; a start time, once set, stays."""
    if previous is None:
        return
    before, after = previous["status"], current["status"]
    if RANK[after] < RANK[before]:
        raise ContractBroken(step, f"status went back from {before!r} to {after!r}")
    if previous["started_at"] is not None and current["started_at"] != previous["started_at"]:
        raise ContractBroken(
            step,
            f"'started_at' changed from {previous['started_at']!r} to {current['started_at']!r}",
        )


def _relative_path(step: str, value: Any, key: str) -> None:
    if not isinstance(value, str) or not value:
        raise ContractBroken(step, f"{key!r} is not a non-empty string: {value!r}")
    if value.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", value):
        raise ContractBroken(step, f"{key!r} is an absolute path: {value!r}")
    if ".." in re.split(r"[/\\]", value):
        raise ContractBroken(step, f"{key!r} climbs out of the base directory: {value!r}")


class Smoke:
    """One pass through the run lifecycle against ``base_url``."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.base_url: str = args.base_url
        self.question: str = args.question
        self.use_sse: bool = args.sse
        self.timeout: float = args.timeout
        self.poll: float = args.poll
        self.run_id_arg: str | None = args.run_id
        self.enable_sql: bool = args.enable_sql
        self.out_arg: Path | None = args.out
        self.recorder = Recorder(out=args.out)
        self.step = "start"
        self.last_status: dict[str, Any] | None = None
        self.status_responses = 0
        self.events = 0

    # ----------------------------------------------------------------- plumbing

    def _save(self, name: str, step: str, response: httpx.Response, **extra: Any) -> None:
        record: dict[str, Any] = {
            "step": step,
            "request": f"{response.request.method} {response.request.url}",
            "status_code": response.status_code,
            "headers": _headers(response),
        }
        record.update(extra)
        if "events" not in extra:
            record["body"] = _body(response)
        self.recorder.save(name, record)

    def _transport_error(self, step: str, exc: httpx.TransportError) -> Exception:
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return Unreachable(f"cannot connect to {self.base_url} ({step}): {exc}")
        if isinstance(exc, httpx.TimeoutException):
            return ContractBroken(step, f"timeout: no answer within {self.timeout:g} s ({exc!r})")
        return ContractBroken(step, f"the connection broke: {exc!r}")

    async def _request(
        self, step: str, name: str, method: str, url: str, client: httpx.AsyncClient, **kw: Any
    ) -> httpx.Response:
        self.step = step
        try:
            response = await client.request(method, url, **kw)
        except httpx.TransportError as exc:
            raise self._transport_error(step, exc) from exc
        self._save(name, step, response)
        return response

    @staticmethod
    def _expect_code(step: str, response: httpx.Response, *codes: int) -> None:
        if response.status_code not in codes:
            wanted = " or ".join(str(c) for c in codes)
            raise ContractBroken(
                step,
                f"HTTP {response.status_code} instead of {wanted}: {_short(_body(response))}",
            )

    @staticmethod
    def _json(step: str, response: httpx.Response) -> Any:
        content_type = response.headers.get("content-type", "")
        if not content_type.startswith("application/json"):
            raise ContractBroken(step, f"content-type is {content_type!r}, not application/json")
        try:
            return response.json()
        except ValueError:
            raise ContractBroken(step, f"the body is not JSON: {_short(response.text)}") from None

    def _error_body(self, step: str, response: httpx.Response, code: str) -> None:
        body = self._json(step, response)
        if not isinstance(body, dict):
            raise ContractBroken(step, f"the error body is not a JSON object: {_short(body)}")
        for key in ERROR_KEYS:
            if key not in body:
                raise ContractBroken(step, f"the error body has no {key!r} field: {_short(body)}")
            if not isinstance(body[key], str) or not body[key]:
                raise ContractBroken(step, f"error {key!r} is not a non-empty string: {body!r}")
        if body["code"] != code:
            raise ContractBroken(step, f"error code is {body['code']!r}, expected {code!r}")

    # ----------------------------------------------------------------- the flow

    async def run(self) -> str:
        """The whole flow within ``timeout`` seconds; the summary line."""
        http_timeout = httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0))
        try:
            with anyio.fail_after(self.timeout):
                async with httpx.AsyncClient(
                    base_url=self.base_url, timeout=http_timeout
                ) as client:
                    return await self._flow(client)
        except TimeoutError:
            last = ""
            if self.last_status is not None:
                last = f" (last status {self.last_status['status']!r})"
            raise ContractBroken(
                self.step, f"timeout: not done within --timeout {self.timeout:g} s{last}"
            ) from None

    async def _flow(self, client: httpx.AsyncClient) -> str:
        accepted = await self._create(client)
        run_id = accepted["run_id"]
        if self.use_sse:
            final = await self._follow_events(client, run_id)
            response = await self._request(
                "status after the stream", "status", "GET", accepted["status_url"], client
            )
            self._expect_code(self.step, response, 200)
            again = check_status_payload(self.step, self._json(self.step, response), run_id)
            self.status_responses += 1
            for key in ("status", "finish_reason", "completed_at"):
                if again[key] != final[key]:
                    raise ContractBroken(
                        self.step,
                        f"{key!r} is {again[key]!r} but the terminal status event said "
                        f"{final[key]!r}",
                    )
        else:
            final = await self._poll(client, accepted["status_url"], run_id)
        output = await self._artifact(
            client, "output", accepted["output_url"], run_id, final, OUTPUT_KEYS
        )
        context = await self._artifact(
            client, "context", accepted["context_url"], run_id, final, CONTEXT_KEYS
        )
        await self._unknown_run(client)

        mode = f"SSE ({self.events} events)" if self.use_sse else "polling"
        answer = f"answer {len(output['content'])} chars" if output else "no output (409)"
        evidence = "context bundle" if context else "no context (409)"
        return (
            f"OK {run_id}: {final['status']} ({final['finish_reason']}) via {mode}, "
            f"{self.status_responses} status responses, {answer}, {evidence}; "
            f"{self.recorder.count} responses saved in {self.recorder.out}"
        )

    async def _create(self, client: httpx.AsyncClient) -> dict[str, Any]:
        step = "POST /api/v1/runs"
        request: dict[str, Any] = {"question": self.question, "enable_sql": self.enable_sql}
        if self.run_id_arg is not None:
            request["run_id"] = self.run_id_arg
        response = await self._request(step, "post", "POST", API, client, json=request)
        self._expect_code(step, response, 202)
        body = _exact_keys(step, self._json(step, response), ACCEPTED_KEYS, "202 body")
        run_id = body["run_id"]
        if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
            raise ContractBroken(step, f"'run_id' is not a valid run id: {run_id!r}")
        # From here on the responses have a folder (the default one names the run).
        self.recorder.open(self.out_arg or SMOKE_DIR / run_id)
        if self.run_id_arg is not None and run_id != self.run_id_arg:
            raise ContractBroken(step, f"'run_id' is {run_id!r}, expected {self.run_id_arg!r}")
        if body["status"] != "queued":
            raise ContractBroken(step, f"'status' is {body['status']!r}, expected 'queued'")
        for key in ("status", "output", "context"):
            expected = f"{API}/{run_id}/{key}"
            if body[f"{key}_url"] != expected:
                raise ContractBroken(
                    step, f"'{key}_url' is {body[f'{key}_url']!r}, expected {expected!r}"
                )
        location = response.headers.get("location")
        if location != body["status_url"]:
            raise ContractBroken(
                step, f"Location header is {location!r}, expected {body['status_url']!r}"
            )
        return body

    async def _poll(
        self, client: httpx.AsyncClient, status_url: str, run_id: str
    ) -> dict[str, Any]:
        previous: dict[str, Any] | None = None
        while True:
            step = f"GET status (poll {self.status_responses + 1})"
            response = await self._request(step, "status", "GET", status_url, client)
            self._expect_code(step, response, 200)
            current = check_status_payload(step, self._json(step, response), run_id)
            self.status_responses += 1
            check_transition(step, previous, current)
            previous = self.last_status = current
            if current["status"] in TERMINAL:
                return current
            self.step = f"waiting for a terminal status (polled {self.status_responses} times)"
            await anyio.sleep(self.poll)

    async def _follow_events(self, client: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
        from httpx_sse import aconnect_sse  # noqa: PLC0415 - a dev dependency, checked in main

        step = "GET events"
        self.step = step
        url = f"{API}/{run_id}/events"
        log: list[dict[str, Any]] = []
        response: httpx.Response | None = None
        try:
            async with aconnect_sse(client, "GET", url) as source:
                response = source.response
                if response.status_code != 200:
                    await response.aread()
                    self._expect_code(step, response, 200)
                content_type = response.headers.get("content-type", "")
                if not content_type.startswith("text/event-stream"):
                    raise ContractBroken(
                        step, f"content-type is {content_type!r}, not text/event-stream"
                    )
                return await self._read_events(source, run_id, log)
        except httpx.TransportError as exc:
            raise self._transport_error(self.step, exc) from exc
        finally:
            if response is not None and response.status_code == 200:
                self._save("events", step, response, events=log)
            elif response is not None:
                self._save("events", step, response)

    async def _read_events(
        self, source: EventSource, run_id: str, log: list[dict[str, Any]]
    ) -> dict[str, Any]:
        terminal: dict[str, Any] | None = None
        previous: dict[str, Any] | None = None
        expected_id = 1
        self.step = "GET events (waiting for event 1)"
        async for sse in source.aiter_sse():
            try:
                data: Any = json.loads(sse.data)
            except ValueError:
                data = sse.data
            log.append({"id": sse.id, "event": sse.event, "data": data})
            step = f"GET events (event id {sse.id!r}, {sse.event!r})"
            self.events += 1
            if terminal is not None:
                raise ContractBroken(step, "an event arrived after the terminal status event")
            if sse.id != str(expected_id):
                raise ContractBroken(step, f"event id is {sse.id!r}, expected {expected_id}")
            expected_id += 1
            if sse.event not in EVENT_NAMES:
                raise ContractBroken(
                    step, f"event name {sse.event!r} is not one of {sorted(EVENT_NAMES)}"
                )
            if isinstance(data, str):
                raise ContractBroken(step, f"event data is not JSON: {_short(data)}")
            if sse.event == "status":
                current = check_status_payload(step, data, run_id)
                check_transition(step, previous, current)
                previous = self.last_status = current
                if current["status"] in TERMINAL:
                    terminal = current
            else:
                keys = PROGRESS_KEYS if sse.event == "progress" else DELTA_KEYS
                body = _exact_keys(step, data, keys, f"{sse.event} data")
                if body["run_id"] != run_id:
                    raise ContractBroken(step, f"'run_id' is {body['run_id']!r}, not {run_id!r}")
            self.step = (
                "GET events (waiting for the stream to end after the terminal status)"
                if terminal is not None
                else f"GET events (waiting for event {expected_id})"
            )
        if terminal is None:
            last = previous["status"] if previous else None
            raise ContractBroken(
                "GET events",
                f"the stream ended before a terminal status event (last status {last!r})",
            )
        return terminal

    async def _artifact(
        self,
        client: httpx.AsyncClient,
        name: str,
        url: str,
        run_id: str,
        final: dict[str, Any],
        keys: frozenset[str],
    ) -> dict[str, Any] | None:
        step = f"GET {name}"
        response = await self._request(step, name, "GET", url, client)
        if final["status"] in ANSWERED:
            self._expect_code(step, response, 200)
        else:  # failed or stopped: what the pipeline wrote, or 409 no_output
            self._expect_code(step, response, 200, 409)
            if response.status_code == 409:
                self._error_body(step, response, "no_output")
                return None
        body = _exact_keys(step, self._json(step, response), keys, f"{name} payload")
        if body["run_id"] != run_id:
            raise ContractBroken(step, f"'run_id' is {body['run_id']!r}, expected {run_id!r}")
        if body["status"] != final["status"]:
            raise ContractBroken(
                step, f"'status' is {body['status']!r}, the run ended {final['status']!r}"
            )
        if name == "output":
            if not isinstance(body["content"], str):
                raise ContractBroken(step, f"'content' is not a string: {_short(body['content'])}")
            _relative_path(step, body["final_output_path"], "final_output_path")
        else:
            if not isinstance(body["context_bundle"], dict):
                raise ContractBroken(
                    step, f"'context_bundle' is not a JSON object: {_short(body['context_bundle'])}"
                )
            _relative_path(step, body["context_bundle_path"], "context_bundle_path")
        return body

    async def _unknown_run(self, client: httpx.AsyncClient) -> None:
        step = "GET status of an unknown run"
        missing = f"smoke-missing-{uuid.uuid4().hex[:12]}"
        response = await self._request(
            step, "unknown-run", "GET", f"{API}/{missing}/status", client
        )
        self._expect_code(step, response, 404)
        self._error_body(step, response, "run_not_found")


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m app.scripts.test_async_backend_flow",
        description="Pre-frontend smoke test: one run through the v1 API, checked and saved.",
    )
    parser.add_argument(
        "--base-url", default=DEFAULT_BASE_URL, help=f"the server (default: {DEFAULT_BASE_URL})"
    )
    parser.add_argument(
        "--question",
        default=DEFAULT_QUESTION,
        help="the question to ask (default: one the bundled documents answer)",
    )
    parser.add_argument("--sse", action="store_true", help="follow /events instead of polling")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for the responses (default: output/smoke/<run_id>/, git-ignored)",
    )
    parser.add_argument(
        "--timeout", type=_positive, default=120.0, help="bound on the whole flow, s (120)"
    )
    parser.add_argument("--poll", type=_positive, default=1.0, help="polling interval, s (1)")
    parser.add_argument("--run-id", default=None, help="client-chosen run id")
    parser.add_argument("--enable-sql", action="store_true", help="also query tables")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.sse:
        try:
            import httpx_sse  # noqa: PLC0415, F401 - only --sse needs this dev dependency
        except ImportError:
            print(
                "error: --sse needs the httpx-sse package, which is only a dev dependency; "
                "install it (pip install httpx-sse, or pip install -e '.[dev]') "
                "or run without --sse",
                file=sys.stderr,
            )
            return EXIT_UNREACHABLE
    smoke = Smoke(args)
    try:
        summary = anyio.run(smoke.run)
    except Unreachable as exc:
        print(f"UNREACHABLE: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except ContractBroken as exc:
        if smoke.recorder.pending:  # broke before the run had an id: keep what came back
            stamp = datetime.now(UTC).strftime("%Y%m%d_%H%M%S")
            smoke.recorder.open(smoke.out_arg or SMOKE_DIR / f"failed-{stamp}")
        saved = f" (responses saved in {smoke.recorder.out})" if smoke.recorder.written else ""
        print(f"CONTRACT BROKEN at step '{exc.step}': {exc.problem}{saved}", file=sys.stderr)
        return EXIT_BROKEN
    print(summary)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
