"""Structured logging: one line per record (logfmt, or JSON with LOG_FORMAT=json), each
with the request id; the request line names the client IP, client_id and user id.

The request id comes from a well-formed inbound `X-Request-Id` or is made fresh, and goes
back out in the response header. Values are quoted and escaped (logfmt) or JSON-encoded,
so CR/LF in user input cannot forge a log line. Secrets never reach a line: the client_id
is a name, read from an access token, a login, Basic auth's user part or a client_id field.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid

from flask import Flask, Response, g, has_request_context, request

from authserver.platform.events import signal

REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
_HANDLER_NAME = "authserver.logfmt"
FORM = "application/x-www-form-urlencoded"
CLIENT_ID_MAX = 100  # a client_id as the caller typed it is cut, not trusted


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = g.get("request_id", "-") if has_request_context() else "-"
        return True


class LogfmtFormatter(logging.Formatter):
    def fields(self, record: logging.LogRecord) -> dict[str, object]:
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
        return fields

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{key}={quote(value)}" for key, value in self.fields(record).items())


class JsonFormatter(LogfmtFormatter):
    """The same fields as one JSON object per line (json.dumps escapes CR/LF)."""

    def format(self, record: logging.LogRecord) -> str:
        # ASCII only, as logfmt: U+2028 and kin would split the line in some viewers.
        return json.dumps(self.fields(record), default=str)


FORMATTERS: dict[str, type[LogfmtFormatter]] = {"logfmt": LogfmtFormatter, "json": JsonFormatter}


class LineHandler(logging.StreamHandler):
    """A stream handler that formats a record before it takes the lock: threads queue
    only for the write of a finished line, not behind each other's formatting (the
    access line is written on every request, by every thread)."""

    def handle(self, record: logging.LogRecord) -> bool:
        if not self.filter(record):
            return False
        try:
            line = self.format(record) + self.terminator
        except Exception:  # as logging does: report it, never fail the request
            self.handleError(record)
            return True
        with self.lock:  # type: ignore[union-attr]  # made by Handler.__init__
            try:
                self.stream.write(line)
                self.stream.flush()
            except Exception:
                self.handleError(record)
        return True


def identify(*, user_id: str | None = None, client_id: str | None = None) -> None:
    """Name the user and the client of this request on its request log line."""
    if user_id:
        g.log_user_id = user_id
    if client_id:
        g.log_client_id = client_id


def _identify_login(_sender: Flask, **payload: object) -> None:
    # The token endpoint learns the user only inside the login use case: its events say.
    if has_request_context():
        client_id = payload.get("client_id")
        identify(
            user_id=getattr(payload.get("user"), "id", None),
            client_id=client_id if isinstance(client_id, str) else None,
        )


def _claimed_client_id() -> str | None:
    """The client_id the caller named (Basic auth's user part, or a client_id parameter),
    for requests no front door identified: a name, never the secret beside it."""
    # Cheap tests on the raw environ first: most requests carry none of these, and this
    # runs on every request (parsing headers, the query or the form costs microseconds).
    environ = request.environ
    if environ.get("HTTP_AUTHORIZATION", "")[:6].lower() == "basic ":
        auth = request.authorization
        if auth is not None and auth.username:
            return auth.username[:CLIENT_ID_MAX]
    named: str | None = None
    if "client_id" in environ.get("QUERY_STRING", ""):
        named = request.args.get("client_id")
    if not named and environ.get("CONTENT_TYPE", "").startswith(FORM):
        # Only a form the view parsed already: parsing here could raise (a body over
        # MAX_CONTENT_LENGTH is a 413 already answered) or read a body nobody wanted.
        form = request.__dict__.get("form")
        named = form.get("client_id") if form is not None else None
    return named[:CLIENT_ID_MAX] if named else None


def quote(value: object) -> str:
    text = str(value)
    if text and re.fullmatch(r"[A-Za-z0-9._:/@+-]+", text):
        return text
    escaped = text.encode("unicode_escape").decode("ascii").replace('"', '\\"')
    return f'"{escaped}"'


def init_app(app: Flask) -> None:
    root = logging.getLogger("authserver")
    root.setLevel(app.config["LOG_LEVEL"].upper())
    handler = next((h for h in root.handlers if h.get_name() == _HANDLER_NAME), None)
    if handler is None:
        handler = LineHandler(sys.stderr)
        handler.set_name(_HANDLER_NAME)
        handler.addFilter(RequestIdFilter())
        root.addHandler(handler)
        root.propagate = False
    # One handler per process; the app built last says the format (there is one in
    # production, tests build many).
    handler.setFormatter(FORMATTERS[app.config["LOG_FORMAT"]]())
    # app.logger is the same "authserver" logger: Flask sees our handler and adds none.
    access = logging.getLogger("authserver.request")
    for event in ("identity.login.success", "identity.login.failure"):
        signal(event).connect(_identify_login, sender=app)

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
                        "ip": request.remote_addr or "-",
                        "client_id": g.get("log_client_id") or _claimed_client_id() or "-",
                        "user_id": g.get("log_user_id") or "-",
                    }
                },
            )
        return response
