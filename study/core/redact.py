"""Passwords never leave the process: tracking and storage URIs are masked wherever they are
printed, logged or saved.

``redact("http://me:secret@host:5000")`` is ``"http://me:***@host:5000"``; it works on any text
(an error message that quotes a URI included). ``RedactingFilter`` applies it to every log
record; the command-line entry points install it on the root logger's handlers and print their
one-line errors through ``redact`` too.
"""

from __future__ import annotations

import logging
import re

#: scheme://user:password@  ->  scheme://user:***@
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:@/\s]*):(?P<pw>[^@/\s]+)@")
#: ...?password=x / token=x / secret=x in a query string
_QUERY = re.compile(r"(?i)(?P<key>[?&](?:password|passwd|pwd|token|secret|access_key|secret_key)=)[^&\s]+")
MASK = "***"


def redact(text: str) -> str:
    """``text`` with the password of every URI in it replaced by ``***``."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    return _QUERY.sub(lambda m: f"{m['key']}{MASK}", text)


class RedactingFilter(logging.Filter):
    """Masks URI passwords in a record's message and arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg = record.getMessage()
            record.args = ()
        record.msg = redact(str(record.msg))
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def install_log_redaction() -> None:
    """Put a :class:`RedactingFilter` on the root logger and its handlers (entry points)."""
    root = logging.getLogger()
    flt = RedactingFilter()
    root.addFilter(flt)
    for handler in root.handlers:
        handler.addFilter(flt)
    logging.lastResort.addFilter(flt)  # what prints when no handler is configured
