"""Run state and events in Redis (APP_BACKEND=redis): any API node serves any run.

Keys, each starting with APP_REDIS_PREFIX (``P``)::

    P:run:<id>       hash: one field per RunState field (JSON values) and ``seq``, the id
                     of the run's last event
    P:events:<id>    stream: the run's events, entry id ``<seq>-0``, fields event and data
    P:runs           sorted set: every run id, scored by creation time in microseconds
    P:counts         hash: runs per status (metrics, queue depth)
    P:running        set: the running runs (the sweeper's worklist)
    P:by-status:<s>  sorted set: the runs of status s by creation time (``?status=`` lists;
                     the queued ones are the re-sender's worklist)
    P:indexed        set once the per-status indexes hold every run
    P:marks          sorted set: ``newest_started``, the creation time of the newest run
                     that has started
    P:durations      list: ``[status, seconds]`` of runs that ended, until a node takes them
    P:resent         hash: run id -> ``<times>:<last time>`` a queued run was sent again
    P:hb:<id>        a running run's heartbeat; it expires when its worker stops beating
    P:cancel:<id>    a cancel request for a running run; its worker's should_stop sees it
    P:idem:<sha256>  an Idempotency-Key's run id ('' while the run is being created)

Every change of a run is one WATCH/MULTI transaction on its hash: the state is read, moved
by the same rule book as the file store (``apply_transition``), and written back together
with its event (XADD with the next sequence number) and the indexes. When another node or
worker changed the hash meanwhile, EXEC fails and the change is tried again on the new
state, so two nodes can never both move a run, and every event has exactly one number. A
piece of the answer is appended by a Lua script (HINCRBY of seq, then XADD), which is atomic
against those transactions.

Artifacts stay under the shared ``output/``; when a run ends, its events and its final
state are also written there (events.jsonl, api_state.json), so a run folder is complete
whichever backend made it.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import redis
import redis.asyncio
from redis.exceptions import RedisError, WatchError

from app.api.services.errors import (
    IllegalTransition,
    InvalidRequest,
    QueueFull,
    RunActive,
    RunAlreadyExists,
    RunNotFound,
    StoreUnavailable,
)
from app.api.services.run_status import STATUSES
from app.api.services.run_store import (
    EVENTS_FILE,
    STATE_FILE,
    RunEvent,
    RunOptions,
    RunState,
    apply_transition,
)
from app.config import AppConfig
from app.modules.atomic_file import write_bytes_atomic, write_json_atomic
from app.modules.run_ids import is_valid_run_id

log = logging.getLogger(__name__)

DURATIONS_KEPT = 10_000  # ended runs' durations waiting for an API node to observe them
# A heartbeat lives this many intervals: one late beat is not yet a lost worker.
HEARTBEAT_LIVES = 3
# A pending Idempotency-Key claim (no run id yet) expires by itself after this long, so a
# node that died between claiming and recording never blocks the key for good.
PENDING_CLAIM_S = 30
PENDING = "pending:"  # the value of a claim whose run is not recorded yet: pending:<token>
LIST_BATCH = 200
# Longer than any single command takes (the stream reads block for 1 s at most).
SOCKET_TIMEOUT_S = 10

# Append one event to a run that is running, for the attempt that runs it (a worker that
# lost its run must not write into it, or into a new run that took its id): the next
# number, then the stream entry.
_APPEND = """
if redis.call('HGET', KEYS[1], 'status') ~= ARGV[3] then return 0 end
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[4] then return 0 end
local n = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('XADD', KEYS[2], n .. '-0', 'event', ARGV[1], 'data', ARGV[2])
return n
"""
# Refresh a heartbeat, or set a cancel request, only while the run is running (and, for
# the heartbeat, still this attempt's): 1 if set.
_WHILE_RUNNING = """
if redis.call('HGET', KEYS[1], 'status') ~= ARGV[1] then return 0 end
if ARGV[4] ~= '' and redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[4] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
return 1
"""
# Replace a key's value only if it still holds the value we expect, and keep it for good.
_SET_IF = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""
# Delete a key only if it still holds the value we expect (a claim that changed hands stays).
_DELETE_IF = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# Hash fields that are not RunState fields: the last event's number, the running attempt.
_PLAIN = frozenset({"seq", "attempt"})

Change = Callable[[RunState | None], tuple[RunState, str, dict[str, Any]] | None]


@contextlib.contextmanager
def _unavailable() -> Iterator[None]:
    """A Redis that cannot be reached is a 503 for the client, not a 500."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise StoreUnavailable(str(exc) or type(exc).__name__) from exc


def _encode(state: RunState) -> dict[str, str]:
    return {name: json.dumps(value) for name, value in state.to_json().items()}


def _decode(run_id: str, raw: dict[str, str]) -> RunState:
    """The state in a run's hash; a damaged hash fails only its own run, readably."""
    try:
        data = {name: json.loads(value) for name, value in raw.items() if name not in _PLAIN}
        state = RunState.from_json(data)
        if state.run_id != run_id:
            raise ValueError(f"it names run {state.run_id!r}")
    except (ValueError, TypeError) as exc:
        log.error("run %s: its Redis hash is damaged (%s)", run_id, exc)
        return RunState(
            run_id=run_id,
            status="failed",
            question="",
            finish_reason="error",
            error={"code": "state_unreadable", "message": f"the run's state is damaged ({exc})"},
        )
    return state


def _event(entry_id: str, fields: dict[str, str]) -> RunEvent:
    return RunEvent(int(entry_id.split("-", 1)[0]), fields["event"], json.loads(fields["data"]))


class RedisClaim:
    """A pending claim this request made: its value is a token of its own until the run id
    replaces it, so that an expired claim taken by another request is never touched."""

    def __init__(self, claims: RedisClaims, name: str, token: str) -> None:
        self.claims = claims
        self.name = name
        self.token = token

    def record(self, run_id: str) -> None:
        with _unavailable():
            kept = self.claims._set_if(keys=[self.name], args=[self.token, run_id])
        if not kept:
            log.warning("Idempotency-Key claim expired before run %s was recorded", run_id)

    def abandon(self) -> None:
        with _unavailable():
            self.claims._delete_if(keys=[self.name], args=[self.token])


class RedisClaims:
    """Idempotency-Key claims as Redis keys: SET NX claims, the value is the run id."""

    def __init__(self, client: Any, prefix: str) -> None:
        self.redis = client
        self.prefix = prefix
        self._delete_if = client.register_script(_DELETE_IF)
        self._set_if = client.register_script(_SET_IF)

    def _key(self, key: str) -> str:
        return f"{self.prefix}:idem:{hashlib.sha256(key.encode()).hexdigest()}"

    def try_claim(self, key: str) -> RedisClaim | None:
        name, token = self._key(key), f"{PENDING}{uuid.uuid4().hex}"
        with _unavailable():
            if not self.redis.set(name, token, nx=True, ex=PENDING_CLAIM_S):
                return None
        return RedisClaim(self, name, token)

    def claimed_run(self, key: str) -> str | None:
        with _unavailable():
            value = self.redis.get(self._key(key))
        return str(value) if value and not value.startswith(PENDING) else None

    def age_s(self, key: str) -> float:
        return 0.0  # a pending claim expires by itself (PENDING_CLAIM_S)

    def release_if(self, key: str, run_id: str | None) -> None:
        with _unavailable():
            self._delete_if(keys=[self._key(key)], args=[run_id or ""])


class RedisRunStore:
    """The run store of APP_BACKEND=redis; thread-safe (redis-py's pool), shared by nodes."""

    def __init__(self, config: AppConfig) -> None:
        self.config = config
        self.root = config.output_root
        self.prefix = config.redis_prefix
        # Typed as Any: redis-py's reply types are unions over bytes, str and the RESP3
        # shapes; with decode_responses every reply here is str, converted where read.
        # Timeouts: a half-open connection must end in a 503, not hang a thread for good.
        options: dict[str, Any] = {
            "decode_responses": True,
            "health_check_interval": 30,
            "socket_connect_timeout": SOCKET_TIMEOUT_S,
            "socket_timeout": SOCKET_TIMEOUT_S,
        }
        self.redis: Any = redis.Redis.from_url(config.redis_url, **options)
        # The event loop's own clients: status reads and event streams never block the loop.
        self.aredis: Any = redis.asyncio.Redis.from_url(config.redis_url, **options)
        # Each open event stream holds a connection in XREAD BLOCK: a pool of their own,
        # larger than the stream cap, so that streams never starve the status reads.
        self.astreams: Any = redis.asyncio.Redis.from_url(
            config.redis_url, max_connections=config.max_sse_streams + 16, **options
        )
        self.claims = RedisClaims(self.redis, self.prefix)
        self._append = self.redis.register_script(_APPEND)
        self._while_running = self.redis.register_script(_WHILE_RUNNING)

    # ------------------------------------------------------------------ keys
    def key(self, kind: str, run_id: str | None = None) -> str:
        return f"{self.prefix}:{kind}" if run_id is None else f"{self.prefix}:{kind}:{run_id}"

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> None:
        """Create ``output/`` and check that Redis answers (fail at start-up, not later)."""
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            self.redis.ping()
            self._index_statuses()
        except RedisError as exc:
            raise RuntimeError(
                f"APP_BACKEND=redis: Redis at {self.config.redis_url} cannot be reached: {exc}"
            ) from exc

    def _index_statuses(self) -> None:
        """Build the per-status indexes once for runs recorded before they existed.

        The marker is set after the build, so a node stopped half-way leaves it to the next
        one; two nodes building at once write the same entries."""
        if self.redis.exists(self.key("indexed")):
            return  # built already (by this or another node)
        for start in range(0, int(self.redis.zcard(self.key("runs"))), LIST_BATCH):
            ids = self.redis.zrange(
                self.key("runs"), start, start + LIST_BATCH - 1, withscores=True
            )
            with self.redis.pipeline(transaction=False) as pipe:
                for run_id, _ in ids:
                    pipe.hget(self.key("run", run_id), "status")
                statuses = pipe.execute()
            with self.redis.pipeline(transaction=False) as pipe:
                for (run_id, score), raw in zip(ids, statuses, strict=True):
                    if raw is not None:
                        pipe.zadd(self.key("by-status", json.loads(raw)), {run_id: int(score)})
                pipe.execute()
        self.redis.set(self.key("indexed"), "by-status")

    def close(self) -> None:
        self.redis.close()

    async def aclose(self) -> None:
        await self.aredis.aclose()
        await self.astreams.aclose()

    def is_writable(self) -> bool:
        probe = self.root / f".ready-{os.getpid()}"
        try:
            probe.write_bytes(b"")
            probe.unlink()
            return bool(self.redis.ping())
        except (OSError, RedisError):
            return False

    # ------------------------------------------------------------------ writing
    def create(
        self, run_id: str, options: RunOptions, *, max_queued: int | None = None
    ) -> RunState:
        """Record ``run_id`` as queued; RunAlreadyExists when any node has it already, and
        QueueFull when ``max_queued`` runs are waiting: the count is read in the same
        transaction as the run is written, so every node together never exceeds it."""
        state = RunState.queued(run_id, options)

        def claim(before: RunState | None) -> tuple[RunState, str, dict[str, Any]]:
            if before is not None:  # the WATCHed hash exists: someone created it first
                raise RunAlreadyExists(run_id, f"/api/v1/runs/{run_id}/status")
            return state, "status", state.status_payload()

        # The folder is claimed too, exclusively: an id whose folder exists (a CLI run, a
        # folder left behind) is taken as well, as with the file backend (docs/api.md: 409).
        run_dir = self.root / run_id
        try:
            run_dir.mkdir()
        except FileExistsError:
            raise RunAlreadyExists(run_id, f"/api/v1/runs/{run_id}/status") from None
        except OSError as exc:
            raise StoreUnavailable(f"output/ is not writable: {exc.strerror}") from exc
        try:
            self._change(run_id, claim, max_queued=max_queued)
        except BaseException:
            with contextlib.suppress(OSError):
                run_dir.rmdir()  # not ours after all: leave no folder behind
            raise
        return copy.copy(state)

    def transition(
        self,
        run_id: str,
        status: str,
        *,
        expect: frozenset[str] | None = None,
        attempt: str | None = None,
        **changes: Any,
    ) -> RunState:
        """Move a run to ``status`` atomically; IllegalTransition if its state does not allow.

        ``attempt``: only if the run is still the one this worker attempt started.
        """

        def move(before: RunState | None) -> tuple[RunState, str, dict[str, Any]]:
            if before is None:
                raise RunNotFound(run_id)
            if attempt is not None and _attempt(before) != attempt:
                raise IllegalTransition(f"run {run_id}: not attempt {attempt} any more")
            apply_transition(before, status, expect=expect, changes=changes)
            return before, "status", before.status_payload()

        after = self._change(run_id, move)
        assert after is not None  # move() never skips
        if after.terminal:
            self._keep_on_disk(after)
        return after

    def try_transition(
        self,
        run_id: str,
        status: str,
        *,
        expect: frozenset[str] | None = None,
        attempt: str | None = None,
        **changes: Any,
    ) -> RunState | None:
        try:
            return self.transition(run_id, status, expect=expect, attempt=attempt, **changes)
        except IllegalTransition:
            return None

    def progress(
        self,
        run_id: str,
        *,
        stage: str,
        message: str,
        step: int,
        total: int,
        attempt: str | None = None,
    ) -> None:
        def advance(before: RunState | None) -> tuple[RunState, str, dict[str, Any]] | None:
            if before is None or before.status != "running":
                return None
            if attempt is not None and _attempt(before) != attempt:
                return None
            before.stage, before.message, before.step = stage, message, step
            before.total_steps = total
            payload = {
                "run_id": run_id,
                "stage": stage,
                "message": message,
                "step": step,
                "total_steps": total,
            }
            return before, "progress", payload

        self._change(run_id, advance)

    def append_delta(self, run_id: str, text: str, *, attempt: str) -> None:
        """A piece of the answer, as the next event of a run this attempt is running."""
        data = json.dumps({"run_id": run_id, "text": text}, ensure_ascii=False)
        with _unavailable():
            self._append(
                keys=[self.key("run", run_id), self.key("events", run_id)],
                args=["answer_delta", data, json.dumps("running"), attempt],
            )

    def _change(
        self, run_id: str, change: Change, *, max_queued: int | None = None
    ) -> RunState | None:
        """Apply ``change`` to the run's current state in one WATCH/MULTI transaction (with
        ``max_queued``, also watching the queue's count, so that a full queue refuses)."""
        run_key = self.key("run", run_id)
        with _unavailable(), self.redis.pipeline() as pipe:
            while True:
                try:
                    if max_queued is None:
                        pipe.watch(run_key)
                    else:
                        pipe.watch(run_key, self.key("counts"))
                    raw: dict[str, str] = pipe.hgetall(run_key)
                    if max_queued is not None and not raw:  # a taken id is a 409, not a 429
                        waiting = int(pipe.hget(self.key("counts"), "queued") or 0)
                        if waiting >= max_queued:
                            pipe.unwatch()
                            retry = max(1, min(60, waiting // max(1, self.config.max_workers)))
                            raise QueueFull(max_queued, retry_after_s=retry)
                    before = _decode(run_id, raw) if raw else None
                    old_status = before.status if before is not None else None
                    outcome = change(before)
                    if outcome is None:
                        pipe.unwatch()
                        return None
                    after, kind, payload = outcome
                    seq = int(raw.get("seq", 0)) + 1
                    pipe.multi()
                    fields = {**_encode(after), "seq": str(seq), "attempt": _attempt(after)}
                    pipe.hset(run_key, mapping=fields)
                    pipe.xadd(
                        self.key("events", run_id),
                        {"event": kind, "data": json.dumps(payload, ensure_ascii=False)},
                        id=f"{seq}-0",
                    )
                    if before is None:
                        pipe.zadd(self.key("runs"), {run_id: after.created_ns // 1000})
                    if old_status != after.status:
                        self._reindex(pipe, run_id, old_status, after)
                    pipe.execute()
                    return copy.copy(after)
                except WatchError:
                    continue  # changed under us: read the new state and decide again

    def _reindex(self, pipe: Any, run_id: str, old: str | None, after: RunState) -> None:
        """Everything a change of status writes besides the run and its event: the counts,
        the running set and heartbeat, the runs of each status by creation time (``?status=``
        lists and the re-sending of stranded runs read them), the creation time of the
        newest run that has started, and the duration of a run that ran and ended."""
        new, created_us = after.status, after.created_ns // 1000
        if old is not None:
            pipe.hincrby(self.key("counts"), old, -1)
            pipe.zrem(self.key("by-status", old), run_id)
        pipe.hincrby(self.key("counts"), new, 1)
        pipe.zadd(self.key("by-status", new), {run_id: created_us})
        if old == "queued":
            pipe.hdel(self.key("resent"), run_id)
        if new == "running":
            pipe.sadd(self.key("running"), run_id)
            # Alive from the first moment: the sweeper never sees a running run without one.
            pipe.set(self.key("hb", run_id), "started", ex=self.heartbeat_ttl)
            pipe.zadd(self.key("marks"), {"newest_started": created_us}, gt=True)
        elif old == "running":
            pipe.srem(self.key("running"), run_id)
            pipe.delete(self.key("hb", run_id), self.key("cancel", run_id))
            self._record_duration(pipe, after)

    def _record_duration(self, pipe: Any, after: RunState) -> None:
        """A run that ran and ended leaves its duration for the API nodes' metrics (runs end
        on the workers, which serve no /metrics): ``take_durations`` reads them."""
        if not after.terminal or not after.started_at:
            return
        ended = datetime.fromisoformat(after.completed_at or after.started_at)
        seconds = (ended - datetime.fromisoformat(after.started_at)).total_seconds()
        pipe.rpush(self.key("durations"), json.dumps([after.status, max(0.0, seconds)]))
        pipe.ltrim(self.key("durations"), -DURATIONS_KEPT, -1)

    def take_durations(self, limit: int = 1000) -> list[tuple[str, float]]:
        """The durations of runs that ended since the last take (by any node), oldest first."""
        with _unavailable():
            raw = self.redis.lpop(self.key("durations"), limit) or []
        return [(str(status), float(seconds)) for status, seconds in map(json.loads, raw)]

    def stranded_runs(self, *, grace_s: float, now_us: int | None = None) -> list[str]:
        """Queued runs whose message to the workers is gone, due to be sent again.

        A run is stranded when it has waited at least ``grace_s`` and the queue shows its
        message is lost: a run queued after it has already started (the workers took the
        queue past it), or no run is running at all (an idle worker would have taken it).
        A run is sent again at most once per ``grace_s`` x 2^(times sent again), so a
        deployment with no worker at all does not fill its broker.
        """
        now_us = now_us or time.time_ns() // 1000
        with _unavailable(), self.redis.pipeline(transaction=False) as pipe:
            pipe.zrangebyscore(
                self.key("by-status", "queued"),
                "-inf",
                now_us - int(grace_s * 1e6),
                withscores=True,
            )
            pipe.zscore(self.key("marks"), "newest_started")
            pipe.scard(self.key("running"))
            pipe.hgetall(self.key("resent"))
            waiting, newest_started, running, resent = pipe.execute()
        found = []
        for run_id, created_us in waiting:
            passed_by = newest_started is not None and newest_started > created_us
            if not (passed_by or running == 0):
                continue
            times, _, last_us = resent.get(run_id, "0:0").partition(":")
            due = int(last_us or 0) + int(grace_s * 1e6) * 2 ** int(times)
            if int(times) == 0 or now_us >= due:
                found.append(run_id)
        return found

    def mark_resent(self, run_id: str, *, now_us: int | None = None) -> int:
        """Record that ``run_id``'s task was sent again; how many times it has been."""
        now_us = now_us or time.time_ns() // 1000
        with _unavailable():
            raw = self.redis.hget(self.key("resent"), run_id) or "0:0"
            times = int(raw.partition(":")[0]) + 1
            self.redis.hset(self.key("resent"), run_id, f"{times}:{now_us}")
        return times

    def _keep_on_disk(self, state: RunState) -> None:
        """A finished run's folder gets its events and final state, like the file backend's."""
        run_dir = self.root / state.run_id
        if not run_dir.is_dir():
            return
        try:
            events = self.read_events(state.run_id)
            lines = "".join(
                json.dumps(e.to_json(), ensure_ascii=False, separators=(",", ":")) + "\n"
                for e in events
            )
            # make_parent=False: a run deleted meanwhile does not get its folder back.
            write_bytes_atomic(run_dir / EVENTS_FILE, lines.encode("utf-8"), make_parent=False)
            write_json_atomic(run_dir / STATE_FILE, state.to_json(), make_parent=False)
        except FileNotFoundError:
            return  # deleted meanwhile
        except (OSError, StoreUnavailable):
            # The run's truth is in Redis; a copy that failed is logged, not fatal.
            log.exception("run %s: could not copy its events and state to disk", state.run_id)

    # ------------------------------------------------------------------ heartbeat, cancel
    @property
    def heartbeat_ttl(self) -> int:
        return max(1, round(self.config.heartbeat_s * HEARTBEAT_LIVES))

    def beat(self, run_id: str, attempt: str) -> bool:
        """Refresh the heartbeat of a run this attempt is running; False when it is not
        (any more): the run ended, or the sweeper gave it up and it must stop."""
        with _unavailable():
            return bool(
                self._while_running(
                    keys=[self.key("run", run_id), self.key("hb", run_id)],
                    args=[json.dumps("running"), attempt, self.heartbeat_ttl, attempt],
                )
            )

    def request_cancel(self, run_id: str) -> bool:
        """Ask the worker of a running run to stop; False when the run is not running."""
        # Kept as long as a run may last: a step that blocks for long still sees it after.
        ttl = int(self.config.run_timeout_s) + 60
        with _unavailable():
            return bool(
                self._while_running(
                    keys=[self.key("run", run_id), self.key("cancel", run_id)],
                    args=[json.dumps("running"), "1", ttl, ""],
                )
            )

    def stop_requested(self, run_id: str, attempt: str) -> str | None:
        """Why this attempt should stop its run: ``cancelled`` (a cancel request), ``lost``
        (the run is no longer running as this attempt's: the sweeper gave it up, or it was
        replaced), or None to go on. One round trip."""
        with _unavailable(), self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(self.key("run", run_id), "status", "attempt")
            pipe.exists(self.key("cancel", run_id))
            (status, current), cancel = pipe.execute()
        if status != json.dumps("running") or current != attempt:
            return "lost"
        return "cancelled" if cancel else None

    def lost_runs(self) -> list[str]:
        """Running runs whose heartbeat has expired: their worker is gone."""
        with _unavailable():
            running = sorted(self.redis.smembers(self.key("running")))
            if not running:
                return []
            with self.redis.pipeline(transaction=False) as pipe:
                for run_id in running:
                    pipe.exists(self.key("hb", run_id))
                alive = pipe.execute()
        return [run_id for run_id, beat in zip(running, alive, strict=True) if not beat]

    # ------------------------------------------------------------------ deleting
    def delete(self, run_id: str) -> None:
        """Remove a terminal run: its keys, then its folder; RunActive while active."""
        run_key = self.key("run", run_id)
        if not is_valid_run_id(run_id):
            raise RunNotFound(run_id)
        with _unavailable(), self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(run_key)
                    raw: dict[str, str] = pipe.hgetall(run_key)
                    if not raw:
                        raise RunNotFound(run_id)
                    state = _decode(run_id, raw)
                    if not state.terminal:
                        raise RunActive(run_id, state.status)
                    pipe.multi()
                    pipe.delete(
                        run_key,
                        self.key("events", run_id),
                        self.key("hb", run_id),
                        self.key("cancel", run_id),
                    )
                    pipe.zrem(self.key("runs"), run_id)
                    pipe.zrem(self.key("by-status", state.status), run_id)
                    pipe.hdel(self.key("resent"), run_id)
                    pipe.hincrby(self.key("counts"), state.status, -1)
                    pipe.execute()
                    break
                except WatchError:
                    continue
        if state.idempotency_key is not None:
            # The key is free again (a retry with it starts a new run), unless it names
            # another run by now.
            self.claims.release_if(state.idempotency_key, run_id)
        _remove_folder(self.root / run_id)
        log.info("run %s deleted (%s)", run_id, state.status)

    def remove_expired(self, *, older_than: datetime) -> list[str]:
        """Delete every terminal run whose completed_at is before ``older_than``."""
        cutoff_us = int(older_than.timestamp() * 1_000_000)
        with _unavailable():
            # Created after the cutoff means completed after it too: those are never read.
            candidates = self.redis.zrangebyscore(self.key("runs"), "-inf", cutoff_us)
        removed = []
        for run_id in candidates:
            try:
                state = self.get(run_id)
                done = state.completed_at and datetime.fromisoformat(state.completed_at)
                if not state.terminal or not done or done >= older_than:
                    continue
                self.delete(run_id)
            except (RunNotFound, RunActive, ValueError):
                continue
            removed.append(run_id)
        if removed:
            log.info("retention: removed %d run(s) completed before %s", len(removed), older_than)
        return removed

    # ------------------------------------------------------------------ reading
    def get(self, run_id: str) -> RunState:
        if not is_valid_run_id(run_id):
            raise RunNotFound(run_id)
        with _unavailable():
            raw: dict[str, str] = self.redis.hgetall(self.key("run", run_id))
        if not raw:
            raise RunNotFound(run_id)
        return _decode(run_id, raw)

    async def aget(self, run_id: str) -> RunState:
        if not is_valid_run_id(run_id):
            raise RunNotFound(run_id)
        with _unavailable():
            raw: dict[str, str] = await self.aredis.hgetall(self.key("run", run_id))
        if not raw:
            raise RunNotFound(run_id)
        return _decode(run_id, raw)

    async def astatus(self, run_id: str) -> dict[str, Any]:
        return (await self.aget(run_id)).status_payload()

    def status_json(self, run_id: str) -> bytes | None:
        """Never from memory: every node asks Redis (astatus)."""
        return None

    def run_for_key(self, key: str) -> str | None:
        return self.claims.claimed_run(key)

    def list_runs(
        self, *, limit: int, cursor: str | None = None, status: str | None = None
    ) -> tuple[list[RunState], str | None]:
        """Runs newest first, ``limit`` at a time; the cursor continues after the last one."""
        after = _decode_cursor(cursor) if cursor else None
        # A status has its own index: a filtered page reads only runs of that status.
        index = self.key("runs") if status is None else self.key("by-status", status)
        found: list[tuple[RunState, int]] = []
        skip = 0  # only when a whole batch shares one score (runs created in the same µs)
        with _unavailable():
            while len(found) <= limit:
                # Each batch starts after the last run seen (score, then id, both falling),
                # not at an offset: runs created or deleted meanwhile shift nothing.
                top = after[0] if after is not None else "+inf"
                batch = self.redis.zrevrangebyscore(
                    index, top, "-inf", start=skip, num=LIST_BATCH, withscores=True
                )
                if not batch:
                    break
                # Equal scores come in falling order of the id: skip what was seen.
                ids = [
                    (run_id, int(score))
                    for run_id, score in batch
                    if after is None or int(score) < after[0] or run_id < after[1]
                ]
                if not ids:
                    skip += len(batch)
                    continue
                skip = 0
                after = (ids[-1][1], ids[-1][0])
                with self.redis.pipeline(transaction=False) as pipe:
                    for run_id, _ in ids:
                        pipe.hgetall(self.key("run", run_id))
                    hashes = pipe.execute()
                for (run_id, score), raw in zip(ids, hashes, strict=True):
                    if not raw:
                        continue  # deleted since the index was read
                    state = _decode(run_id, raw)
                    if status is None or state.status == status:
                        found.append((state, score))
        page = found[:limit]
        next_cursor = None
        if len(found) > limit:
            last, score = page[-1]
            next_cursor = _encode_cursor(score, last.run_id)
        return [state for state, _ in page], next_cursor

    def count(self) -> int:
        with _unavailable():
            return int(self.redis.zcard(self.key("runs")))

    def count_by_status(self) -> dict[str, int]:
        with _unavailable():
            raw: dict[str, str] = self.redis.hgetall(self.key("counts"))
        return {status: max(0, int(raw.get(status, 0))) for status in sorted(STATUSES)}

    # ------------------------------------------------------------------ events
    def read_events(self, run_id: str, *, after: int = 0) -> list[RunEvent]:
        with _unavailable():
            entries = self.redis.xrange(self.key("events", run_id), min=f"({after}-0")
        return [_event(entry_id, fields) for entry_id, fields in entries]

    async def aread_events(self, run_id: str, *, after: int, block_ms: int) -> list[RunEvent]:
        """Events after ``after``; waits up to ``block_ms`` for one when there is none yet."""
        with _unavailable():
            reply = await self.astreams.xread(
                {self.key("events", run_id): f"{after}-0"}, count=500, block=block_ms
            )
        if not reply:
            return []
        _, entries = reply[0]
        return [_event(entry_id, fields) for entry_id, fields in entries]

    async def aevents_after(self, run_id: str, after: int) -> list[RunEvent]:
        """Every event after ``after``, at once (no waiting)."""
        with _unavailable():
            entries = await self.aredis.xrange(self.key("events", run_id), min=f"({after}-0")
        return [_event(entry_id, fields) for entry_id, fields in entries]

    async def alast_event_id(self, run_id: str) -> int:
        with _unavailable():
            last = await self.aredis.xrevrange(self.key("events", run_id), count=1)
        return _event(*last[0]).id if last else 0


def _attempt(state: RunState) -> str:
    """The worker attempt that runs (or ran) the run: a token in its owner record."""
    return str((state.owner or {}).get("attempt", ""))


def _remove_folder(path: Path) -> None:
    # A writer that was finishing (the copy of a run's events to disk) may add a file
    # while the tree is removed: one more pass takes it.
    for _ in range(2):
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            return
    log.warning("%s could not be removed completely", path)


def _encode_cursor(score: int, run_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([score, run_id]).encode()).decode()


def _decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        score, run_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return int(score), str(run_id)
    except (ValueError, TypeError, OverflowError):
        raise InvalidRequest(
            "cursor",
            "the query parameter cursor is not one this server gave out (use next_cursor as given)",
            source="query",
        ) from None
