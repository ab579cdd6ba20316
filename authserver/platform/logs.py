"""Structured logging: one logfmt line per record, each with the request id.

The request id comes from a well-formed inbound `X-Request-Id` or is made fresh, and goes
back out in the response header. Values are quoted and escaped, so CR/LF in user input
cannot forge a log line.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid

from flask import Flask, Response, g, has_request_context, request

REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
_HANDLER_NAME = "authserver.logfmt"


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = g.get("request_id", "-") if has_request_context() else "-"
        return True


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        fields = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "msg": message,
        }
        fields.update(getattr(record, "fields", {}))
        return " ".join(f"{key}={quote(value)}" for key, value in fields.items())


def quote(value: object) -> str:
    text = str(value)
    if text and re.fullmatch(r"[A-Za-z0-9._:/@+-]+", text):
        return text
    escaped = text.encode("unicode_escape").decode("ascii").replace('"', '\\"')
    return f'"{escaped}"'


def init_app(app: Flask) -> None:
    root = logging.getLogger("authserver")
    root.setLevel(app.config["LOG_LEVEL"].upper())
    if not any(h.get_name() == _HANDLER_NAME for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.set_name(_HANDLER_NAME)
        handler.setFormatter(LogfmtFormatter())
        handler.addFilter(RequestIdFilter())
        root.addHandler(handler)
        root.propagate = False
    # app.logger is the same "authserver" logger: Flask sees our handler and adds none.
    access = logging.getLogger("authserver.request")

    @app.before_request
    def assign_request_id() -> None:
        inbound = request.headers.get("X-Request-Id", "")
        g.request_id = inbound if REQUEST_ID_RE.match(inbound) else uuid.uuid4().hex
        g.request_started = time.perf_counter()

    @app.after_request
    def log_request(response: Response) -> Response:
        request_id = g.get("request_id")
        if request_id:
            response.headers["X-Request-Id"] = request_id
            elapsed = (time.perf_counter() - g.request_started) * 1000
            access.info(
                "request",
                extra={
                    "fields": {
                        "method": request.method,
                        "path": request.path,
                        "status": response.status_code,
                        "ms": f"{elapsed:.1f}",
                    }
                },
            )
        return response
