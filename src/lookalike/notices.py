"""Other libraries' notices, once and in one line: FiftyOne warns on every connection to its bundled
MongoDB that it is "the oldest supported major version" (five lines of advice about a setting a lookalike
user never chose). Installed when lookalike is imported; nothing of FiftyOne is imported here.
"""

from __future__ import annotations

import logging

OLD_MONGODB = "You are running the oldest supported major version of MongoDB"
OLD_MONGODB_LINE = "FiftyOne's database is the oldest MongoDB version it supports (works; see deprecation.voxel51.com)"


class _Once(logging.Filter):
    """Shortens a record that starts with ``prefix`` to ``line`` the first time, and drops it afterwards."""

    def __init__(self, prefix: str, line: str) -> None:
        super().__init__()
        self.prefix, self.line, self.seen = prefix, line, False

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(self.prefix):
            return True
        if self.seen:
            return False
        self.seen = True
        record.msg, record.args = self.line, None
        return True


def install() -> None:
    """Add the filters (again is harmless: a logger keeps one of each)."""
    logger = logging.getLogger("fiftyone.core.odm.database")
    if not any(isinstance(f, _Once) for f in logger.filters):
        logger.addFilter(_Once(OLD_MONGODB, OLD_MONGODB_LINE))
