"""KeyedLocks: one holder per key at a time, and no entry left once nobody holds or waits."""

from __future__ import annotations

import threading
import time

from app.api.services.keyed_locks import KeyedLocks


def test_one_holder_per_key_and_nothing_left_behind() -> None:
    locks = KeyedLocks()
    inside = 0
    most_inside = 0
    counter = threading.Lock()
    start = threading.Barrier(8)

    def work() -> None:
        nonlocal inside, most_inside
        start.wait(5)
        for _ in range(300):
            with locks.hold("run-a"):
                with counter:
                    inside += 1
                    most_inside = max(most_inside, inside)
                with counter:
                    inside -= 1
            with locks.hold("run-b"):  # another key never waits for run-a
                pass

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    assert most_inside == 1
    assert len(locks) == 0


def test_a_waiter_keeps_the_lock_alive_until_it_has_had_its_turn() -> None:
    locks = KeyedLocks()
    locks.acquire("run")
    entered = threading.Event()

    def waiter() -> None:
        with locks.hold("run"):
            entered.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    deadline = time.monotonic() + 5
    while locks.users("run") < 2:  # the waiter has registered and is blocked
        assert time.monotonic() < deadline, "the waiter never arrived"
        time.sleep(0.001)
    assert not entered.is_set()
    locks.release("run")
    assert entered.wait(5)
    thread.join(5)
    assert len(locks) == 0
