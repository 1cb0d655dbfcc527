"""Zoho connection settings, read from django.conf.settings at call time and checked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from django.conf import settings

from billing_sync.zoho.errors import ZohoConfigError


class DataCenter(NamedTuple):
    """The hosts of one Zoho data center."""

    accounts: str
    api: str
    web_app: str


# Canada's accounts server and web app are on zohocloud.ca.
DATA_CENTERS: dict[str, DataCenter] = {
    "com": DataCenter(
        "https://accounts.zoho.com", "https://www.zohoapis.com", "https://billing.zoho.com"
    ),
    "eu": DataCenter(
        "https://accounts.zoho.eu", "https://www.zohoapis.eu", "https://billing.zoho.eu"
    ),
    "in": DataCenter(
        "https://accounts.zoho.in", "https://www.zohoapis.in", "https://billing.zoho.in"
    ),
    "com.au": DataCenter(
        "https://accounts.zoho.com.au",
        "https://www.zohoapis.com.au",
        "https://billing.zoho.com.au",
    ),
    "jp": DataCenter(
        "https://accounts.zoho.jp", "https://www.zohoapis.jp", "https://billing.zoho.jp"
    ),
    "ca": DataCenter(
        "https://accounts.zohocloud.ca",
        "https://www.zohoapis.ca",
        "https://billing.zohocloud.ca",
    ),
    "com.cn": DataCenter(
        "https://accounts.zoho.com.cn",
        "https://www.zohoapis.com.cn",
        "https://billing.zoho.com.cn",
    ),
    "sa": DataCenter(
        "https://accounts.zoho.sa", "https://www.zohoapis.sa", "https://billing.zoho.sa"
    ),
}
API_PATH = "/billing/v1"
REQUIRED_SETTINGS = (
    "ZOHO_CLIENT_ID",
    "ZOHO_CLIENT_SECRET",
    "ZOHO_REFRESH_TOKEN",
    "ZOHO_ORGANIZATION_ID",
)


@dataclass(frozen=True)
class ZohoConfig:
    """Everything the client needs to reach one Zoho Billing organization."""

    client_id: str
    client_secret: str
    refresh_token: str
    organization_id: str
    data_center: str
    accounts_url: str
    api_base_url: str
    timeout_seconds: float
    rate_limit_requests: int
    rate_limit_window_seconds: float
    daily_limit: int
    daily_reserve: int
    max_wait_seconds: float
    default_block_seconds: float
    account_number_field: str
    max_attempts: int
    retry_backoff_seconds: float
    stale_claim_seconds: float
    create_settle_seconds: float
    index_max_age_seconds: float

    def __repr__(self) -> str:
        # Keep secrets out of tracebacks and debug output.
        return f"ZohoConfig(data_center={self.data_center!r}, api_base_url={self.api_base_url!r})"


def config_problems() -> list[str]:
    """Return every problem with the Zoho settings, each naming the setting; empty when fine."""
    problems = [f"{name} is not set." for name in REQUIRED_SETTINGS if not getattr(settings, name)]
    if settings.ZOHO_DATA_CENTER not in DATA_CENTERS:
        known = ", ".join(DATA_CENTERS)
        problems.append(f"ZOHO_DATA_CENTER={settings.ZOHO_DATA_CENTER!r} is not one of: {known}.")
    for name in ("ZOHO_ACCOUNTS_URL", "ZOHO_API_BASE_URL"):
        value = getattr(settings, name)
        if value and not value.startswith(("http://", "https://")):
            problems.append(f"{name}={value!r} must start with http:// or https://.")
    if settings.ZOHO_TIMEOUT_SECONDS <= 0:
        problems.append("ZOHO_TIMEOUT_SECONDS must be greater than 0.")
    if settings.ZOHO_RATE_LIMIT_REQUESTS < 1:
        problems.append("ZOHO_RATE_LIMIT_REQUESTS must be at least 1.")
    if settings.ZOHO_RATE_LIMIT_WINDOW_SECONDS <= 0:
        problems.append("ZOHO_RATE_LIMIT_WINDOW_SECONDS must be greater than 0.")
    if settings.ZOHO_DAILY_LIMIT < 0 or settings.ZOHO_DAILY_RESERVE < 0:
        problems.append("ZOHO_DAILY_LIMIT and ZOHO_DAILY_RESERVE must be 0 or more.")
    elif settings.ZOHO_DAILY_LIMIT and settings.ZOHO_DAILY_RESERVE >= settings.ZOHO_DAILY_LIMIT:
        problems.append("ZOHO_DAILY_RESERVE must be less than ZOHO_DAILY_LIMIT.")
    if settings.ZOHO_MAX_WAIT_SECONDS < 0:
        problems.append("ZOHO_MAX_WAIT_SECONDS must be 0 or more.")
    if settings.ZOHO_CREATE_SETTLE_SECONDS < 0:
        problems.append("ZOHO_CREATE_SETTLE_SECONDS must be 0 or more.")
    if settings.ZOHO_INDEX_MAX_AGE_SECONDS < 0:
        problems.append("ZOHO_INDEX_MAX_AGE_SECONDS must be 0 or more.")
    if settings.ZOHO_SCHEDULE_MAX_WAIT_SECONDS < 0:
        problems.append("ZOHO_SCHEDULE_MAX_WAIT_SECONDS must be 0 or more.")
    if settings.ZOHO_MAX_ATTEMPTS < 1:
        problems.append("ZOHO_MAX_ATTEMPTS must be at least 1.")
    if not settings.ZOHO_ACCOUNT_NUMBER_FIELD.strip():
        problems.append("ZOHO_ACCOUNT_NUMBER_FIELD must name the Zoho custom field's label.")
    if settings.ZOHO_ALERT_BLOCK_SECONDS < 0:
        problems.append("ZOHO_ALERT_BLOCK_SECONDS must be 0 or more.")
    if not 0 <= settings.ZOHO_ALERT_DAILY_BUDGET_PERCENT <= 100:
        problems.append("ZOHO_ALERT_DAILY_BUDGET_PERCENT must be between 0 (off) and 100.")
    admin_url = settings.ZOHO_ALERT_ADMIN_URL.rstrip("/")
    if admin_url and not admin_url.startswith(("http://", "https://")):
        problems.append("ZOHO_ALERT_ADMIN_URL must start with http:// or https://.")
    elif admin_url.endswith("/admin"):
        problems.append("ZOHO_ALERT_ADMIN_URL is the site's address: the links add /admin/.")
    return problems


def zoho_config() -> ZohoConfig:
    """Build the configuration from settings, or raise ZohoConfigError listing every problem."""
    problems = config_problems()
    if problems:
        raise ZohoConfigError("Zoho settings are incomplete: " + " ".join(problems))
    data_center = DATA_CENTERS[settings.ZOHO_DATA_CENTER]
    return ZohoConfig(
        client_id=settings.ZOHO_CLIENT_ID,
        client_secret=settings.ZOHO_CLIENT_SECRET,
        refresh_token=settings.ZOHO_REFRESH_TOKEN,
        organization_id=settings.ZOHO_ORGANIZATION_ID,
        data_center=settings.ZOHO_DATA_CENTER,
        accounts_url=(settings.ZOHO_ACCOUNTS_URL or data_center.accounts).rstrip("/"),
        api_base_url=(settings.ZOHO_API_BASE_URL or data_center.api + API_PATH).rstrip("/"),
        timeout_seconds=settings.ZOHO_TIMEOUT_SECONDS,
        rate_limit_requests=settings.ZOHO_RATE_LIMIT_REQUESTS,
        rate_limit_window_seconds=settings.ZOHO_RATE_LIMIT_WINDOW_SECONDS,
        daily_limit=settings.ZOHO_DAILY_LIMIT,
        daily_reserve=settings.ZOHO_DAILY_RESERVE,
        max_wait_seconds=settings.ZOHO_MAX_WAIT_SECONDS,
        default_block_seconds=settings.ZOHO_DEFAULT_BLOCK_SECONDS,
        account_number_field=settings.ZOHO_ACCOUNT_NUMBER_FIELD.strip(),
        max_attempts=settings.ZOHO_MAX_ATTEMPTS,
        retry_backoff_seconds=settings.ZOHO_RETRY_BACKOFF_SECONDS,
        stale_claim_seconds=settings.ZOHO_STALE_CLAIM_SECONDS,
        create_settle_seconds=settings.ZOHO_CREATE_SETTLE_SECONDS,
        index_max_age_seconds=settings.ZOHO_INDEX_MAX_AGE_SECONDS,
    )


def zoho_web_customer_url(zoho_customer_id: str) -> str:
    """Where a person opens this customer in the Zoho Billing web app ("" when unknown)."""
    data_center = DATA_CENTERS.get(settings.ZOHO_DATA_CENTER)
    if not (data_center and settings.ZOHO_ORGANIZATION_ID and zoho_customer_id):
        return ""
    return (
        f"{data_center.web_app}/app/{settings.ZOHO_ORGANIZATION_ID}#/customers/{zoho_customer_id}"
    )
