"""Structured JSON logging for the service and the CLI.

Petition text and personal data are never passed to a logger on purpose (log ids, lengths, codes,
timings). As a second line of defence a filter masks anything that looks like an ID number,
a bank card or a phone number in a formatted message before it is written.
"""

from __future__ import annotations

import logging
import logging.config
import re
from typing import Any

_REDACTIONS = (
    (re.compile(r"(?<!\d)\d{17}[\dXx](?!\d)"), "[ID]"),
    (re.compile(r"(?<!\d)\d{15,19}(?!\d)"), "[NUMBER]"),
    (re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)"), "[PHONE]"),
    (re.compile(r"(?<!\d)0\d{2,3}-?\d{7,8}(?!\d)"), "[PHONE]"),
)


def redact(message: str) -> str:
    for pattern, replacement in _REDACTIONS:
        message = pattern.sub(replacement, message)
    return message


class RedactingFilter(logging.Filter):
    """Mask identifier-shaped digit runs in every record's final message."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def configure_logging(level: str = "INFO", json_lines: bool = True) -> None:
    """Configure the root logger (entry points only: the app factory and the CLI)."""
    formatter: dict[str, Any] = (
        {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        }
        if json_lines
        else {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    )
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "filters": {"redact": {"()": RedactingFilter}},
            "formatters": {"default": formatter},
            "handlers": {
                "stderr": {
                    "class": "logging.StreamHandler",
                    "stream": "ext://sys.stderr",
                    "formatter": "default",
                    "filters": ["redact"],
                }
            },
            "root": {"level": level, "handlers": ["stderr"]},
            "loggers": {
                "uvicorn": {"level": level, "handlers": ["stderr"], "propagate": False},
                "uvicorn.error": {"level": level, "handlers": ["stderr"], "propagate": False},
                "uvicorn.access": {"level": level, "handlers": ["stderr"], "propagate": False},
                "jieba": {"level": "WARNING"},
            },
        }
    )
