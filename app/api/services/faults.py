"""Named points between two writes of a run's change, where a test can make a crash happen.

The store calls ``fault("create:staged")`` and the like between writes; nothing happens
unless a test has installed a hook (``installed(hook)``), which may raise to stop the
change right there, as a kill would. Then the test opens a new store over the same folder
and checks that start-up finished or undid the change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

Hook = Callable[[str], None]

_hook: Hook | None = None


def fault(point: str) -> None:
    if _hook is not None:
        _hook(point)


@contextmanager
def installed(hook: Hook) -> Iterator[None]:
    global _hook  # noqa: PLW0603 - one hook per process, for tests only
    previous, _hook = _hook, hook
    try:
        yield
    finally:
        _hook = previous
