"""Fault harness: servers a test owns and breaks on purpose, never the shared ones.

`TcpProxy` sits in front of a real server (the shared PostgreSQL) and can cut every
connection and refuse new ones (the server is down), freeze (accept and hold bytes, like a
SIGSTOPped server or a silent network) and restore. `RedisServer` is a `redis-server` of
the test's own on a free port that can be killed, frozen (SIGSTOP), thawed and restarted.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from typing import Any

from redis import Redis
from redis.exceptions import RedisError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _reset(sock: socket.socket) -> None:
    """Close with an RST, as a dying server's kernel does, so the peer learns at once."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    with contextlib.suppress(OSError):
        sock.close()


class TcpProxy:
    """A threaded TCP proxy on 127.0.0.1:<port> to `target`, with three states:
    "up" (forwarding), "cut" (connections reset, new ones refused) and "frozen"."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._state = "up"
        self._flowing = threading.Event()  # cleared while frozen: pumps hold their bytes
        self._flowing.set()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._closed = False
        threading.Thread(target=self._accept_loop, daemon=True, name="proxy-accept").start()

    # --- control ------------------------------------------------------------------------
    def cut(self) -> None:
        """The server is gone: every open connection is reset, new ones are refused."""
        with self._lock:
            self._state = "cut"
            self._flowing.set()
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            _reset(sock)

    def freeze(self) -> None:
        """The server stops answering: connections stay open, no byte goes through."""
        with self._lock:
            self._state = "frozen"
            self._flowing.clear()

    def restore(self) -> None:
        """Back to forwarding; bytes held while frozen go through now."""
        with self._lock:
            self._state = "up"
            self._flowing.set()

    def close(self) -> None:
        self._closed = True
        self.cut()
        with contextlib.suppress(OSError):
            self._listener.close()

    # --- plumbing -----------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                state = self._state
            if state == "cut":
                _reset(client)  # what a closed port answers, for a client's purposes
                continue
            threading.Thread(
                target=self._serve, args=(client,), daemon=True, name="proxy-conn"
            ).start()

    def _serve(self, client: socket.socket) -> None:
        with self._lock:
            self._sockets.add(client)  # so that cut() and close() reach it while it waits
        self._flowing.wait()  # a frozen server does not even start the handshake
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            _reset(client)
            return
        upstream.settimeout(None)
        with self._lock:
            if self._state == "cut":
                _reset(client)
                _reset(upstream)
                return
            self._sockets.update((client, upstream))
        for src, dst in ((client, upstream), (upstream, client)):
            threading.Thread(
                target=self._pump, args=(src, dst), daemon=True, name="proxy-pump"
            ).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                self._flowing.wait()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            # One side ended: end both (the other pump's recv then fails and stops).
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()
                with self._lock:
                    self._sockets.discard(sock)


class RedisServer:
    """A private `redis-server` (no persistence) on a free port, for breaking."""

    def __init__(self, workdir: str):
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.binary, self.workdir = binary, workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", self.workdir]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return
            time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def kill(self) -> None:
        """The server dies (SIGKILL): its data is gone and its port refuses."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def freeze(self) -> None:
        """SIGSTOP: connections stay open and nothing answers."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        """Stop it cleanly, writing its data to disk first (SHUTDOWN SAVE): the next
        `start` has it back, so "down, then back" is tested apart from "back empty"."""
        assert self.process is not None
        with contextlib.suppress(RedisError):  # the connection drops as the server exits
            Redis(port=self.port, socket_timeout=5).shutdown(save=True)
        self.process.wait(timeout=10)
        self.process = None

    def flush(self) -> None:
        """FLUSHALL: every key gone while the server keeps running."""
        Redis(port=self.port, socket_timeout=5).flushall()

    def keys(self) -> int:
        return int(Redis(port=self.port, socket_timeout=1).dbsize())

    def close(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGCONT)
        self.kill()


def through_proxy(database_url: str, proxy: TcpProxy) -> str:
    """`database_url` with its host and port replaced by the proxy's."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url).set(host="127.0.0.1", port=proxy.port)
    return url.render_as_string(hide_password=False)


def target_of(database_url: str) -> tuple[str, int]:
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    return url.host or "127.0.0.1", url.port or 5432


def timed(call: Any) -> tuple[Any, float]:
    """(call(), seconds it took)."""
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started
