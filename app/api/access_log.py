"""Keep API keys out of uvicorn's access log.

EventSource cannot send headers, so the event stream takes the key as ``?access_token=``;
uvicorn's access log prints the query string. This filter rewrites it before it is written.
"""

from __future__ import annotations

import logging
import re

_TOKEN = re.compile(r"(access_token=)[^&\s\"]*")


class RedactAccessToken(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN.sub(r"\1[redacted]", arg) if isinstance(arg, str) else arg
                for arg in record.args
            )
        if isinstance(record.msg, str) and "access_token=" in record.msg:
            record.msg = _TOKEN.sub(r"\1[redacted]", record.msg)
        return True


def install() -> None:
    """Attach the filter to uvicorn's access logger once per process."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactAccessToken) for f in access.filters):
        access.addFilter(RedactAccessToken())
