"""Log lines as text or as one JSON object per line (``IMGSEARCH_LOG_FORMAT=json``), each with the request id."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys

from app.observability import RequestIdFilter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str, fmt: str = "text") -> None:
    """Replaces the root handlers; uvicorn is started with ``log_config=None`` so its loggers come here too."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # pymilvus logs every failed call with a traceback on a handler of its own (dozens of lines per search during
    # a Milvus outage); the vector store adapter reports failures itself, one line each. pymilvus sets its levels
    # when first imported, so it is imported before they are set here.
    import pymilvus  # noqa: F401

    for name in ("pymilvus", "pymilvus.milvus_client"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
