"""gunicorn settings: `gunicorn -c deploy/gunicorn.conf.py backoffice.wsgi:application`.

Used by `make run-prod` (scripts/run.py --prod) and deploy/systemd/backoffice-web.service. Environment:

  GUNICORN_BIND        address to listen on; default 127.0.0.1:8000, where nginx on the same host proxies
                       to (deploy/nginx/backoffice.conf). Loopback only: X-Forwarded-For is trusted only
                       behind our proxy (DJANGO_BEHIND_PROXY), so no one else may reach gunicorn directly.
  GUNICORN_WORKERS     processes; default 2 x CPU cores + 1.
  GUNICORN_THREADS     threads per process (gthread); default 4. Each thread keeps its own database
                       connection open (DATABASE_CONN_MAX_AGE), so a host holds up to WORKERS x THREADS
                       connections: keep the sum over all hosts, plus the qcluster workers', under
                       PostgreSQL's max_connections (100 by default).
  FORWARDED_ALLOW_IPS  addresses whose X-Forwarded-Proto gunicorn believes (its own variable); default the
                       loopback addresses, where nginx connects from.
"""

import os

wsgi_app = "backoffice.wsgi:application"
bind = [os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")]
workers = int(os.environ.get("GUNICORN_WORKERS", 2 * len(os.sched_getaffinity(0)) + 1))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", 4))

# gthread workers answer the arbiter's heartbeat from their main loop, so `timeout` kills a stuck process,
# not a long request: a large statement import runs for minutes (nginx's proxy_read_timeout bounds it).
timeout = 60
# SIGTERM / SIGHUP: requests in flight get this long to finish (systemd's TimeoutStopSec is above it).
graceful_timeout = 30
# A worker is replaced after about this many requests, so a slow leak never grows unbounded; the jitter
# keeps the workers from restarting all at once.
max_requests = 1000
max_requests_jitter = 100
# The heartbeat file is touched every second; on a disk-backed /tmp that can block a worker. (gunicorn
# creates it with mkstemp, so a shared directory is safe.)
_SHARED_MEMORY = "/dev/shm"  # noqa: S108
worker_tmp_dir = _SHARED_MEMORY if os.path.isdir(_SHARED_MEMORY) else None

forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
# Only the header nginx sets (and overwrites): gunicorn's other defaults would pass a client's own
# X-Forwarded-Ssl / X-Forwarded-Protocol through to the scheme.
secure_scheme_headers = {"X-FORWARDED-PROTO": "https"}

# Masks the secret path segment of callback URLs in the access and error logs.
logger_class = "backoffice.gunicorn_logging.MaskingLogger"
accesslog = "-"
errorlog = "-"
# systemd signals do what gunicornc would (HUP reloads, TERM stops); and the default socket path
# ($HOME/.gunicorn/gunicorn.ctl) would be shared by every gunicorn a user runs on the host.
control_socket_disable = True
