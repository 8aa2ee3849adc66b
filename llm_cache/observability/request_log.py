"""One log line per proxied request, and the log format (``LLM_CACHE_LOG_FORMAT=text|json``).

The line says what an operator needs to follow a request and nothing that could leak: method,
path (never the query string, where a Gemini ``key`` travels), status, ``X-Cache-Status``, the
first 12 characters of the cache key, and the duration. Credentials never reach an
``ExchangeEvent``, so they cannot reach this line either.

    INFO llm_cache.requests: POST /v1/chat/completions 200 HIT key=3f2a9c1b0d4e 0.4ms

With ``json`` every line -- ours, uvicorn's, any library's -- is one JSON object
(``time``, ``level``, ``logger``, ``message``, and for request lines the fields above), which is
what log shippers parse without a regex. ``logging_config`` gives the ``dictConfig`` that
``serve`` hands to uvicorn, so each worker process configures itself the same way.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from llm_cache.engine.events import ExchangeEvent

__all__ = ["KEY_PREFIX", "JsonFormatter", "RequestLog", "logging_config"]

KEY_PREFIX = 12
REQUEST_LOGGER = "llm_cache.requests"
#: Attributes every ``LogRecord`` has; anything else on a record came in through ``extra=``.
_RECORD_FIELDS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys() | {"message", "asctime"}
)
TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"


class RequestLog:
    """``EventBus`` subscriber writing the line for each proxied request."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger(REQUEST_LOGGER)

    def __call__(self, event: ExchangeEvent) -> None:
        logger = self.logger
        if event.front_end != "proxy" or not logger.isEnabledFor(logging.INFO):
            return
        fields = request_fields(event)
        message = (
            f"{fields['method']} {fields['path']} {fields['status']} "
            f"{fields['cache_status'] or '-'} key={fields['key'] or '-'} "
            f"{fields['duration_ms']:.1f}ms"
        )
        if event.error:
            message += f" error={printable(event.error)}"
        # ``makeRecord`` + ``handle`` rather than ``info()``: the same record without the walk up
        # the stack for the caller's file and line (a third of a log call's cost, and always
        # this module anyway).
        record = logger.makeRecord(
            logger.name, logging.INFO, __file__, 0, message, (), None, "RequestLog", fields
        )
        logger.handle(record)


def request_fields(event: ExchangeEvent) -> dict[str, Any]:
    """The structured fields of a request line (also the JSON object's extra keys)."""
    fields: dict[str, Any] = {
        "method": event.method,
        # The event holds no query (never log one); control characters are escaped, so a
        # path cannot forge a line of its own.
        "path": printable(event.path.split("?", 1)[0]),
        "status": event.http_status,
        "cache_status": event.cache_status,
        "key": event.key[:KEY_PREFIX],
        "duration_ms": round(event.duration * 1000.0, 2),
        "provider": event.provider,
        "model": event.model,
    }
    if event.error:
        fields["error"] = event.error
    return fields


_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)}


def printable(text: str) -> str:
    """``text`` with control characters (CR, LF, NUL, ...) shown as ``\\xNN``."""
    return text.translate(_CONTROL) if not text.isprintable() else text


class JsonFormatter(logging.Formatter):
    """Each record as one JSON object on one line."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,  # which worker, with --workers N
        }
        for name, value in vars(record).items():
            if name not in _RECORD_FIELDS and name not in payload:
                payload[name] = value
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(payload, default=str).decode()


def logging_config(level: str = "info", fmt: str = "text") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the proxy and uvicorn, in every worker."""
    formatter: dict[str, Any] = (
        {"()": "llm_cache.observability.request_log.JsonFormatter"}
        if fmt == "json"
        else {"format": TEXT_FORMAT}
    )
    quiet = max(logging.WARNING, logging.getLevelName(level.upper()))
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["default"], "level": level.upper()},
        "loggers": {
            # uvicorn's own loggers go through the same handler (propagate to the root).
            "uvicorn": {"handlers": [], "propagate": True, "level": level.upper()},
            "uvicorn.error": {"handlers": [], "propagate": True, "level": level.upper()},
            "uvicorn.access": {"handlers": [], "propagate": True},
            # The HTTP client's per-request lines print full URLs (a Gemini ``?key=`` among
            # them): never at info. The proxy writes its own line, without credentials.
            **{
                name: {"level": logging.getLevelName(quiet)}
                for name in ("httpx", "httpx2", "httpcore", "httpcore2")
            },
        },
    }
