"""Structured logs: one JSON object a line on stderr, each naming its phase.

``phase("flash_attn.install")`` logs when a phase starts and ends, with its
duration and outcome, so an operator reading RunPod's log stream sees which step
of a cold start ran, how long it took, and why a fallback happened.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from collections.abc import Iterator

__all__ = ["get_logger", "configure", "phase", "event"]

_ROOT = "f5_worker"
_RESERVED = set(vars(logging.makeLogRecord({})))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _RESERVED and not k.startswith("_")})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extra = {k: v for k, v in vars(record).items() if k not in _RESERVED and not k.startswith("_")}
        fields = " ".join(f"{k}={v}" for k, v in extra.items())
        return f"{record.levelname.lower():7} {record.getMessage()} {fields}".rstrip()


def configure(log_format: str = "json", level: int = logging.INFO) -> None:
    root = logging.getLogger(_ROOT)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(f"{_ROOT}.{name}")


def event(logger: logging.Logger, msg: str, level: int = logging.INFO, **fields) -> None:
    logger.log(level, msg, extra=fields)


@contextlib.contextmanager
def phase(logger: logging.Logger, name: str, **fields) -> Iterator[dict]:
    """Log the start and end of a phase; the caller may add outcome fields to the yielded dict."""
    outcome: dict = {}
    start = time.perf_counter()
    event(logger, f"{name} started", phase=name, **fields)
    try:
        yield outcome
    except BaseException as exc:
        event(
            logger,
            f"{name} failed",
            logging.WARNING,
            phase=name,
            duration_ms=round((time.perf_counter() - start) * 1000, 1),
            error=f"{type(exc).__name__}: {exc}",
            **fields,
        )
        raise
    event(
        logger,
        f"{name} done",
        phase=name,
        duration_ms=round((time.perf_counter() - start) * 1000, 1),
        **fields,
        **outcome,
    )
