"""The web container's health check: GET /healthz on this container's port, as the site.

Exit 0 when it answers 2xx, 1 otherwise (Docker's HEALTHCHECK contract), with one line saying
what it got. The Host header is the first of the settings' ALLOWED_HOSTS, so Django accepts the
request; /healthz is exempt from the HTTPS redirect, so plain HTTP reaches it.
"""

from __future__ import annotations

import argparse
import http.client
import os
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent


def site_host() -> str:
    """A host name Django accepts: the first of ALLOWED_HOSTS (a `.example.com` as example.com)."""
    sys.path.insert(0, str(PROJECT))
    from circletel import settings

    hosts = [host.lstrip(".") for host in settings.ALLOWED_HOSTS if host != "*"]
    return hosts[0] if hosts else "localhost"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", default="/healthz", help="What to ask for (default /healthz).")
    parser.add_argument("--timeout", type=float, default=5.0, help="Seconds to wait for it.")
    options = parser.parse_args(argv)
    port = int(os.environ.get("PORT", "8000"))
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=options.timeout)
        connection.request("GET", options.path, headers={"Host": site_host()})
        status = connection.getresponse().status
    except Exception as error:  # noqa: BLE001 - any failure is "unhealthy", said in one line
        sys.stdout.write(f"unhealthy: {options.path} on port {port}: {error}\n")
        return 1
    healthy = 200 <= status < 300
    sys.stdout.write(f"{'healthy' if healthy else 'unhealthy'}: {options.path} answered {status}\n")
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
