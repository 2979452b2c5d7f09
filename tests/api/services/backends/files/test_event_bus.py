"""EventBus: per-subscriber bounded queues, thread-safe publishing, slow subscribers dropped."""

from __future__ import annotations

import asyncio
import threading

import anyio
import pytest

from app.api.services.backends.files.event_bus import EventBus
from app.api.services.run_store import RunEvent


def _event(number: int) -> RunEvent:
    return RunEvent(number, "progress", {"step": number})


@pytest.mark.anyio
class TestEventBus:
    async def test_a_slow_subscriber_is_dropped_and_others_keep_everything(self) -> None:
        bus = EventBus(queue_size=3)
        bus.bind(asyncio.get_running_loop())
        async with bus.subscribe("r") as slow, bus.subscribe("r") as fast:
            received: list[int] = []
            for number in range(1, 6):
                bus.publish("r", _event(number))
                item = fast.queue.get_nowait()
                assert item is not None
                received.append(item.id)
            assert received == [1, 2, 3, 4, 5]
            assert slow.dropped
            # The dropped stream ends (None) so that its client resumes from the log.
            items = [slow.queue.get_nowait() for _ in range(slow.queue.qsize())]
            assert items[-1] is None
            assert bus.count() == 1
        assert bus.count() == 0

    async def test_publishing_from_a_worker_thread_reaches_the_loop_in_order(self) -> None:
        bus = EventBus()
        bus.bind(asyncio.get_running_loop())
        async with bus.subscribe("r") as subscription:

            def publish_all() -> None:
                for number in range(1, 101):
                    bus.publish("r", _event(number))

            worker = threading.Thread(target=publish_all)
            worker.start()
            ids: list[int] = []
            with anyio.fail_after(5):
                while len(ids) < 100:
                    item = await subscription.queue.get()
                    assert item is not None
                    ids.append(item.id)
            worker.join()
        assert ids == list(range(1, 101))

    async def test_close_ends_every_stream(self) -> None:
        bus = EventBus()
        bus.bind(asyncio.get_running_loop())
        async with bus.subscribe("a") as first, bus.subscribe("b") as second:
            bus.close()
            assert await first.queue.get() is None
            assert await second.queue.get() is None

    async def test_events_of_other_runs_are_not_delivered(self) -> None:
        bus = EventBus()
        bus.bind(asyncio.get_running_loop())
        async with bus.subscribe("a") as subscription:
            bus.publish("b", _event(1))
            assert subscription.queue.empty()

    async def test_a_dropped_subscriber_ends_after_the_events_it_has_without_a_hole(
        self,
    ) -> None:
        # Its client resumes with the Last-Event-ID of the last event it got: a hole before
        # that event would be lost for good, so the backlog is cut at its end, not its start.
        bus = EventBus(queue_size=3)
        bus.bind(asyncio.get_running_loop())
        async with bus.subscribe("r") as slow:
            for number in range(1, 6):
                bus.publish("r", _event(number))
            assert slow.dropped
            items = [slow.queue.get_nowait() for _ in range(slow.queue.qsize())]
        assert [item.id if item else None for item in items] == [1, 2, None]

    @pytest.mark.parametrize("ending", ["close", "end"])
    async def test_an_ended_stream_is_sent_nothing_after_its_end_marker(
        self, ending: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        bus = EventBus(queue_size=3)
        bus.bind(asyncio.get_running_loop())
        async with bus.subscribe("r") as subscription:
            if ending == "close":
                bus.close()  # the server is stopping
            else:
                bus._end("r")  # the run was deleted (end() schedules this on the loop)
            for number in range(1, 6):  # events still on their way to the stream
                bus.publish("r", _event(number))
            assert [subscription.queue.get_nowait()] == [None]
            assert subscription.queue.empty()
        assert "fell behind" not in caplog.text
