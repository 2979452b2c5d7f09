"""Domain errors raised by the services; app/api/errors.py maps them to HTTP (one place)."""

from __future__ import annotations

from typing import Any


class RunServiceError(Exception):
    """Base: a stable ``code``, a ``message`` for a person, an HTTP status, extra fields."""

    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra
        self.headers: dict[str, str] = {}


class RunNotFound(RunServiceError):
    status_code = 404
    code = "run_not_found"

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run with id '{run_id}'", run_id=run_id)


class RunAlreadyExists(RunServiceError):
    status_code = 409
    code = "run_exists"

    def __init__(self, run_id: str, status_url: str) -> None:
        super().__init__(
            f"a run with id '{run_id}' already exists; choose another id or follow that run",
            run_id=run_id,
            status_url=status_url,
        )


class RunNotFinished(RunServiceError):
    status_code = 409
    code = "run_not_finished"

    def __init__(self, run_id: str, status: str) -> None:
        super().__init__(
            f"run '{run_id}' is {status}; its output is available once it has finished",
            run_id=run_id,
            status=status,
        )


class NoOutput(RunServiceError):
    status_code = 409
    code = "no_output"

    def __init__(self, run_id: str, status: str, artifact: str) -> None:
        super().__init__(
            f"run '{run_id}' ended {status} before it wrote {artifact}",
            run_id=run_id,
            status=status,
        )


class ArtifactMissing(RunServiceError):
    status_code = 500
    code = "artifact_missing"

    def __init__(self, run_id: str, artifact: str, reason: str) -> None:
        super().__init__(f"run '{run_id}' finished but its {artifact} {reason}", run_id=run_id)


class RunAlreadyFinished(RunServiceError):
    status_code = 409
    code = "run_finished"

    def __init__(self, run_id: str, status: str) -> None:
        super().__init__(
            f"run '{run_id}' has already finished ({status}); there is nothing to cancel",
            run_id=run_id,
            status=status,
        )


class RunActive(RunServiceError):
    status_code = 409
    code = "run_active"

    def __init__(self, run_id: str, status: str) -> None:
        super().__init__(
            f"run '{run_id}' is {status}; cancel it and wait until it has stopped to delete it",
            run_id=run_id,
            status=status,
        )


class QueueFull(RunServiceError):
    status_code = 429
    code = "queue_full"

    def __init__(self, limit: int, retry_after_s: int) -> None:
        super().__init__(
            f"{limit} runs are already waiting; try again in about {retry_after_s} s",
            limit=limit,
        )
        self.headers = {"Retry-After": str(retry_after_s)}


class ShuttingDown(RunServiceError):
    """The server is stopping: it takes no new run (another instance, or this one restarted,
    will)."""

    status_code = 503
    code = "shutting_down"

    def __init__(self, retry_after_s: int = 5) -> None:
        super().__init__(
            f"this server is shutting down and takes no new runs; try again in about "
            f"{retry_after_s} s"
        )
        self.headers = {"Retry-After": str(retry_after_s)}


class InvalidRequest(RunServiceError):
    """A request that passed the schema but not the server's rules (e.g. a path outside)."""

    status_code = 422
    code = "validation_error"

    def __init__(self, field: str, message: str, *, source: str = "body") -> None:
        super().__init__(message, detail=[{"loc": [source, field], "msg": message}])


class IllegalTransition(RuntimeError):
    """A programming error: a run may not move from its state to the one asked."""


class TooManyStreams(RunServiceError):
    status_code = 503
    code = "too_many_streams"

    def __init__(self, limit: int, retry_after_s: int) -> None:
        super().__init__(
            f"this server already has {limit} event streams open; "
            f"try again in about {retry_after_s} s or poll the status URL",
            limit=limit,
        )
        self.headers = {"Retry-After": str(retry_after_s)}


class IdempotencyKeyReused(RunServiceError):
    status_code = 422
    code = "idempotency_key_reused"

    def __init__(self) -> None:
        super().__init__(
            "this Idempotency-Key was already used with a different request; "
            "send a new key for a new run"
        )


class IdempotencyKeyPending(RunServiceError):
    """Another request holds the key and has not recorded its run yet (rare, brief)."""

    status_code = 409
    code = "idempotency_key_pending"

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(
            "a request with this Idempotency-Key is still being processed; retry shortly"
        )
        self.headers = {"Retry-After": str(retry_after_s)}


class StoreUnavailable(RunServiceError):
    """The shared run store (Redis) or the broker cannot be reached: retry later."""

    status_code = 503
    code = "store_unavailable"

    def __init__(self, reason: str, retry_after_s: int = 5) -> None:
        super().__init__(f"the run store cannot be reached ({reason}); try again shortly")
        self.headers = {"Retry-After": str(retry_after_s)}
