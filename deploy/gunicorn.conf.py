"""gunicorn's settings for the admin (the Procfile's `web`).

What a platform varies comes from the environment, so the same file serves a Procfile platform,
docker-compose.yml and tests/test_deployment.py: PORT, WEB_CONCURRENCY, GUNICORN_TIMEOUT.
"""

from __future__ import annotations

import os


def _whole_number(name: str, default: int) -> int:
    """A whole number from the environment; a bad value stops start-up naming the variable."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not a whole number.") from None


# A container's port must be reachable from outside the container; the TLS proxy sits in front.
bind = f"0.0.0.0:{_whole_number('PORT', 8000)}"  # noqa: S104
# WEB_CONCURRENCY is the name platforms use (Heroku sets it from the dyno's size). The admin is
# light: two workers serve a team; the sync runs in the qcluster workers, never here.
workers = _whole_number("WEB_CONCURRENCY", 2)
# An admin request is local work (re-queueing enqueues; a dry-run preview reads the database).
timeout = _whole_number("GUNICORN_TIMEOUT", 60)
graceful_timeout = 30
keepalive = 5
# Recycle workers now and then, staggered, so no slow leak grows for months.
max_requests = 1000
max_requests_jitter = 100

# The access log on stdout: client, method, path, protocol, status, bytes, milliseconds, agent.
# No query string (an admin search holds customers' emails), no referer (it carries one), and no
# request header but the user agent: nothing secret or personal reaches the log.
accesslog = "-"
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms "%(a)s"'
errorlog = "-"

# Workers' heartbeat files in memory, not on a container's overlay disk (gunicorn's advice).
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108
# gunicorn 25+ opens a control socket under $HOME by default: nothing here uses it, the image's
# user has no home to write to, and two servers on one machine (the tests) would share it.
control_socket_disable = True
