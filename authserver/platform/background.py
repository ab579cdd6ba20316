"""Work that must not run inside the request: a small thread pool per app.

Used where the time a request takes must not depend on the work (the password-reset
request must answer as fast for an unknown username as for one that gets an email).
Each job runs in its own app context; a failure is logged, never raised anywhere.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from flask import Flask, current_app

from authserver.platform.extensions import db

log = logging.getLogger("authserver.background")
EXTENSION = "authserver.background"
WORKERS = 2


class Jobs:
    """One app's pool and the jobs still running (tests and shutdown wait for them)."""

    def __init__(self, app: Flask):
        self.app = app
        self.pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="authserver-bg")
        self.pending: set[Future[None]] = set()
        self.lock = threading.Lock()

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        future = self.pool.submit(self._run, fn, *args)
        with self.lock:
            self.pending.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, future: Future[None]) -> None:
        with self.lock:
            self.pending.discard(future)

    def _run(self, fn: Callable[..., None], *args: Any) -> None:
        with self.app.app_context():
            try:
                fn(*args)
            except Exception:  # the request has answered; all we can do is say so in the log
                log.error("background job failed", exc_info=True)
                db.session.rollback()
            finally:
                db.session.remove()

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait for every job submitted so far; False if some still run after `timeout`."""
        with self.lock:
            pending = list(self.pending)
        _, not_done = wait(pending, timeout=timeout)
        return not not_done

    def close(self) -> None:
        """Finish what was submitted and stop the threads (app teardown, tests)."""
        self.pool.shutdown(wait=True)


def submit(fn: Callable[..., None], *args: Any) -> None:
    """Run `fn(*args)` soon, in a worker thread with this app's context."""
    jobs(current_app).submit(fn, *args)


def jobs(app: Flask) -> Jobs:
    return app.extensions[EXTENSION]


def init_app(app: Flask) -> None:
    app.extensions[EXTENSION] = Jobs(app)
