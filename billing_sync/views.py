"""Views for monitors: `/healthz` (health) and `/metrics` (Prometheus), thin over their readers."""

from __future__ import annotations

import hmac
from dataclasses import asdict

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST

from billing_sync.operations.health import health_report
from billing_sync.operations.metrics import metrics_text


@require_safe
@never_cache
def healthz(request: HttpRequest) -> HttpResponse:
    """200 when healthy, 503 when not. Anyone sees the status, the one-line summary and the
    names of the failing checks and warnings; a logged-in staff user also sees every check's
    detail (hosts, cluster names, Zoho's words: for the people who run it)."""
    report = health_report()
    body: dict[str, object] = {
        "status": "ok" if report.ok else "unhealthy",
        "summary": report.summary,
        "failing": report.failing,
        "warnings": report.warnings,
    }
    if _is_staff(request):
        body["checks"] = [asdict(check) for check in report.checks]
    return JsonResponse(body, status=200 if report.ok else 503)


@require_safe
@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    """The billing_sync_* metrics; with ZOHO_METRICS_TOKEN set, only for its bearer (or staff)."""
    if not _may_scrape(request):
        response = HttpResponse("A bearer token is required.\n", status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    try:
        text = metrics_text()
    except DatabaseError:
        return HttpResponse("The database does not answer.\n", status=503)
    return HttpResponse(text, content_type=CONTENT_TYPE_LATEST)


def _is_staff(request: HttpRequest) -> bool:
    try:
        return bool(request.user.is_active and request.user.is_staff)
    except DatabaseError:  # the session cannot be read: answer as to anyone
        return False


def _may_scrape(request: HttpRequest) -> bool:
    token = settings.ZOHO_METRICS_TOKEN
    if not token:
        return True
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
        return True
    return _is_staff(request)
