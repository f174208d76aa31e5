"""Structured JSON logs (structlog). Every line carries the current trace and span id; while a
consumer handles an event, its event id, correlation id and request id too (``tracing.handling``)."""

from __future__ import annotations

import logging
import sys

import structlog
from structlog.contextvars import bind_contextvars, bound_contextvars, clear_contextvars  # noqa: F401


def configure_logging(*, service: str, level: str = "INFO", json: bool = True) -> None:
    from civicgrid_runtime.tracing import log_trace_ids

    processors = [
        structlog.contextvars.merge_contextvars,
        log_trace_ids,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False),
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    clear_contextvars()
    bind_contextvars(service=service)


def get_logger(name: str | None = None):
    return structlog.get_logger(name)
