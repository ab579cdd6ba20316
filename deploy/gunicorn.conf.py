"""gunicorn settings for authserver in production (docs/production.md explains each choice).

    gunicorn -c deploy/gunicorn.conf.py 'authserver:create_app()'

Later wins: this file -> GUNICORN_CMD_ARGS -> the command line (e.g. `-b 0.0.0.0:8000 -w 3`).
"""

from __future__ import annotations

import os

# Cores this process may run on (a cpuset is honoured; a CPU quota is not: then set
# WEB_CONCURRENCY to the quota).
cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1

# Behind the reverse proxy on the same host; the proxy alone faces the network.
bind = "127.0.0.1:8000"

# Processes: two per core. The heaviest CPU work (argon2id, about 23 ms of a core per
# password check) runs in C without the GIL, and each process also waits on PostgreSQL,
# Redis and SMTP; many more processes than this only queue for the cores.
workers = int(os.environ.get("WEB_CONCURRENCY", 2 * cores))
# Threads per process for those waits. Password checks are bounded apart from threads:
# each worker runs at most AUTHSERVER_PASSWORD_HASH_CONCURRENCY at once (default: its share
# of the cores, see post_fork), each holding 19 MiB while it runs (2 cores: 4 x 1 x 19 MiB).
worker_class = "gthread"
threads = 4

# A worker silent for this long is killed and replaced. The slowest honest request waits
# on SMTP (AUTHSERVER_SMTP_TIMEOUT, 10 s) and the SMS webhook (5 s) in turn; 30 s is above.
timeout = 30
# On stop or reload (SIGTERM / SIGHUP), requests in flight get this long to finish.
graceful_timeout = 30
# Idle keep-alive connections from the proxy; longer than the proxy's upstream
# keepalive_timeout (deploy/nginx.conf: 60 s), so the proxy closes first and never
# sends a request on a connection gunicorn is closing.
keepalive = 65

# Replace a worker after about this many requests (jitter: not all at once), which bounds
# any slow leak; each worker builds its own app, so nothing is lost.
max_requests = 10000
max_requests_jitter = 1000

# No preload: every worker builds its own app after the fork, with its own database pool,
# Redis connections and signing-key cache (sockets must not be shared across a fork;
# create_app's key check closes the connections it opened).
preload_app = False

# The scheme and client address come from the app's ProxyFix (AUTHSERVER_PROXY_FIX=1),
# which trusts exactly the proxy's X-Forwarded-* headers. gunicorn must not derive the
# scheme from other headers a client could pass through the proxy (X-Forwarded-Ssl, ...).
secure_scheme_headers: dict[str, str] = {}

# No control socket (gunicorn 25.1+ opens one in $HOME for `gunicornc` by default): systemd
# or the container engine runs the process, and a second server of the same user would
# fight over the same path. (Older gunicorn ignores the unknown name.)
control_socket_disable = True

# The heartbeat file on tmpfs: a worker is not killed because a disk stalled. (gunicorn
# makes it with mkstemp and unlinks it at once, so a shared /dev/shm is no risk.)
if os.path.isdir("/dev/shm"):  # noqa: S108
    worker_tmp_dir = "/dev/shm"  # noqa: S108

# The app logs one line per request itself (with its request id); gunicorn's own messages
# (start, worker boot and exit) go to stderr, i.e. the journal or `docker logs`.
accesslog = None
errorlog = "-"
loglevel = "info"

# Metrics (GET /metrics, prometheus-client's multiprocess mode): every worker writes its
# samples to files in PROMETHEUS_MULTIPROC_DIR and any worker's /metrics adds them up.
# The variable must be set before a worker imports the app, so it is set here, in the
# master: to a fresh private directory unless the environment names one (then use a
# dedicated directory, e.g. systemd's RuntimeDirectory; its *.db files are wiped at start).
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    import tempfile

    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="authserver-metrics-")


def on_starting(server: object) -> None:
    """Counters start at zero with the server: drop the files of an earlier run."""
    folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(folder, mode=0o700, exist_ok=True)
    for name in os.listdir(folder):
        if name.endswith(".db"):
            os.unlink(os.path.join(folder, name))


def post_fork(server: object, worker: object) -> None:
    """Tell the worker how many processes share the cores (the final count, after -w and
    GUNICORN_CMD_ARGS): the app sizes its password-check gate from it (hashgate.py)."""
    os.environ["WEB_CONCURRENCY"] = str(server.cfg.workers)  # type: ignore[attr-defined]


def child_exit(server: object, worker: object) -> None:
    """A worker that exits (recycled by max_requests, or killed) drops its live gauges;
    its counters stay in the sum, as counters must."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]
