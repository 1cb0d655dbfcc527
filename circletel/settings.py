"""Django settings for the CircleTel billing sync project.

Every value comes from the environment, then `.env.local`, then `.env` (the environment wins).
This is the only module that reads the environment; app code reads `django.conf.settings`.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import warnings
from email.utils import getaddresses
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off"}
# read_env never overrides a variable that is already set, so reading .env.local first makes
# the order of precedence: environment, then .env.local, then .env.
for _name in (".env.local", ".env"):
    if (BASE_DIR / _name).is_file():
        env.read_env(BASE_DIR / _name)


def _number(name: str, default: float, cast: type) -> float:
    """A number from the environment; a bad value stops start-up naming the variable."""
    raw = env.str(name, default="").strip()
    if not raw:
        return default
    try:
        return cast(raw)
    except ValueError:
        kind = "a whole number" if cast is int else "a number"
        raise ImproperlyConfigured(f"{name}={raw!r} is not {kind}.") from None


def _flag(name: str, default: bool) -> bool:
    """A yes/no value from the environment; a bad value stops start-up naming the variable."""
    raw = env.str(name, default="").strip().lower()
    if not raw:
        return default
    if raw not in TRUE_WORDS | FALSE_WORDS:
        raise ImproperlyConfigured(f"{name}={raw!r} is not one of: true, false, 1, 0, yes, no.")
    return raw in TRUE_WORDS


def _addresses(name: str) -> list[tuple[str, str]]:
    """Django's (name, address) pairs from a variable holding `Name <address>, ...`."""
    raw = env.str(name, default="").strip()
    pairs = getaddresses([raw]) if raw else []
    for _person, address in pairs:
        if "@" not in address:
            raise ImproperlyConfigured(f"{name}={raw!r} is not a list of Name <address>.")
    return pairs


DJANGO_ENV = env.str("DJANGO_ENV", default="development")
IS_PRODUCTION = DJANGO_ENV == "production"

_INSECURE_DEV_KEY = "django-insecure-development-only-key-never-use-in-production"
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
if not SECRET_KEY:
    if IS_PRODUCTION:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_ENV=production.")
    SECRET_KEY = _INSECURE_DEV_KEY

DEBUG = _flag("DJANGO_DEBUG", not IS_PRODUCTION)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=[] if IS_PRODUCTION else ["*"])

INSTALLED_APPS = [
    "circletel.apps.BillingSyncAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_q",
    "import_export",
    "billing_sync",
    "zoho_emulator",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "circletel.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "circletel.wsgi.application"


def _database(name: str, default: str = "") -> dict:
    """A DATABASES entry from the URL in variable `name`; a bad URL stops start-up, unechoed."""
    try:
        # django-environ warns about an unknown scheme with the whole parsed URL, password and all.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            config = env.db(name, default=default)
    except (ValueError, KeyError, ImproperlyConfigured):
        config = {}
    if not config.get("ENGINE"):
        # Never echo the URL: it may hold a password.
        raise ImproperlyConfigured(
            f"{name} is not a database URL this project understands: use "
            "sqlite:///path/to/file.sqlite3 or postgres://user:password@host:5432/name."
        )
    return config


DATABASES = {"default": _database("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Tests run the worker and the browser against one database: a file, not memory, and one
    # per test process so that two test runs never share it.
    DATABASES["default"]["TEST"] = {
        "NAME": str(Path(tempfile.gettempdir()) / f"billing_sync-test-{os.getpid()}.sqlite3")
    }
    # Commands and a django-q cluster share one SQLite file: wait for locks instead of failing,
    # take the write lock at BEGIN (no upgrade deadlocks), and let readers run beside a writer.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL;",
        }
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- The company's own customer database (billing_sync/imports/source.py) ---------------
# Read by `import_customers --source` and the customers-import schedule (CUSTOMER_SOURCE_QUERY, a
# SELECT whose column names are our field names), written only by the write-back: the Zoho id and
# sync status of our customers into CUSTOMER_SOURCE_WRITEBACK_TABLE, matched by account_number.
# It is the second DATABASES entry, `source`: the router keeps every model and migration off it.
CUSTOMER_SOURCE_URL = env.str("CUSTOMER_SOURCE_URL", default="")
CUSTOMER_SOURCE_QUERY = env.str("CUSTOMER_SOURCE_QUERY", default="").strip()
CUSTOMER_SOURCE_WRITEBACK_TABLE = env.str("CUSTOMER_SOURCE_WRITEBACK_TABLE", default="").strip()
if CUSTOMER_SOURCE_URL:
    DATABASES["source"] = _database("CUSTOMER_SOURCE_URL")
for _name in ("CUSTOMER_SOURCE_QUERY", "CUSTOMER_SOURCE_WRITEBACK_TABLE"):
    if globals()[_name] and not CUSTOMER_SOURCE_URL:
        raise ImproperlyConfigured(f"{_name} is set but CUSTOMER_SOURCE_URL is not.")
if CUSTOMER_SOURCE_WRITEBACK_TABLE and not re.fullmatch(
    r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?", CUSTOMER_SOURCE_WRITEBACK_TABLE
):
    raise ImproperlyConfigured(
        f"CUSTOMER_SOURCE_WRITEBACK_TABLE={CUSTOMER_SOURCE_WRITEBACK_TABLE!r} is not a table "
        "name: letters, digits and underscores, optionally schema.table."
    )
DATABASE_ROUTERS = ["billing_sync.routers.DefaultDatabaseOnly"]

# The admin's Import and Export (django-import-export, billing_sync/admin/import_and_export.py):
# exporting needs the right to view customers (importing, to add and change them). The upload
# waits between preview and confirm in the temporary folder (one host; MediaStorage for several).
IMPORT_EXPORT_EXPORT_PERMISSION_CODE = "view"

# Monitors and Prometheus often probe over plain HTTP inside the private network: no redirect.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
if IS_PRODUCTION:
    # HTTPS only: `manage.py check --deploy` is clean with these.
    SECURE_SSL_REDIRECT = _flag("DJANGO_SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = _number("DJANGO_SECURE_HSTS_SECONDS", 31_536_000, int)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    if _flag("DJANGO_BEHIND_TLS_PROXY", False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Where `manage.py collectstatic` writes (the image does it at build time).
STATIC_ROOT = Path(env.str("DJANGO_STATIC_ROOT", default=str(BASE_DIR / "var" / "static")))
if IS_PRODUCTION:
    # gunicorn serves the admin's CSS and JS itself, from what collectstatic wrote: hashed names
    # (cached for a year), compressed copies. Development has runserver, which serves them.
    MIDDLEWARE.insert(
        MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1,
        "whitenoise.middleware.WhiteNoiseMiddleware",
    )
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "billing_sync": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="WARNING")},
        # Alerts are always on, recoveries (INFO) included, whatever LOG_LEVEL says.
        "billing_sync.alerts": {"level": "INFO"},
        # Apprise may write a webhook's address (a secret) at DEBUG: we say which service failed.
        "apprise": {"level": "CRITICAL"},
    },
}

# --- Zoho Billing -------------------------------------------------------------------------------
# Secrets have no defaults. Hosts derive from ZOHO_DATA_CENTER unless overridden (the demo and
# the tests point both overrides at the local emulator).
ZOHO_CLIENT_ID = env.str("ZOHO_CLIENT_ID", default="")
ZOHO_CLIENT_SECRET = env.str("ZOHO_CLIENT_SECRET", default="")
ZOHO_REFRESH_TOKEN = env.str("ZOHO_REFRESH_TOKEN", default="")
ZOHO_ORGANIZATION_ID = env.str("ZOHO_ORGANIZATION_ID", default="")
ZOHO_DATA_CENTER = env.str("ZOHO_DATA_CENTER", default="com")
ZOHO_ACCOUNTS_URL = env.str("ZOHO_ACCOUNTS_URL", default="")
ZOHO_API_BASE_URL = env.str("ZOHO_API_BASE_URL", default="")
ZOHO_TIMEOUT_SECONDS = _number("ZOHO_TIMEOUT_SECONDS", 30.0, float)
# 30 per 60 s is the lower of Zoho's two published figures: a breach blocks the whole org.
ZOHO_RATE_LIMIT_REQUESTS = _number("ZOHO_RATE_LIMIT_REQUESTS", 30, int)
ZOHO_RATE_LIMIT_WINDOW_SECONDS = _number("ZOHO_RATE_LIMIT_WINDOW_SECONDS", 60.0, float)
# Zoho's block lasts ~10 minutes, sometimes 15-20: wait up to 25 minutes before giving up.
# Zoho's daily cap per organization (plans publish 1,000 and up): 0 turns the count off. The
# reserve is left for the organization's other integrations.
ZOHO_DAILY_LIMIT = _number("ZOHO_DAILY_LIMIT", 1000, int)
ZOHO_DAILY_RESERVE = _number("ZOHO_DAILY_RESERVE", 100, int)
ZOHO_MAX_WAIT_SECONDS = _number("ZOHO_MAX_WAIT_SECONDS", 1500.0, float)
# How long a 429 blocks us when Zoho sends no Retry-After.
ZOHO_DEFAULT_BLOCK_SECONDS = _number("ZOHO_DEFAULT_BLOCK_SECONDS", 600.0, float)
ZOHO_ACCOUNT_NUMBER_FIELD = env.str("ZOHO_ACCOUNT_NUMBER_FIELD", default="Account Number")
ZOHO_MAX_ATTEMPTS = _number("ZOHO_MAX_ATTEMPTS", 3, int)
ZOHO_RETRY_BACKOFF_SECONDS = _number("ZOHO_RETRY_BACKOFF_SECONDS", 2.0, float)
ZOHO_STALE_CLAIM_SECONDS = _number("ZOHO_STALE_CLAIM_SECONDS", 300.0, float)
# How long a run waits for a lost database to answer again (within its --max-wait) before it
# stops (issue 21).
ZOHO_DB_OUTAGE_WAIT_SECONDS = _number("ZOHO_DB_OUTAGE_WAIT_SECONDS", 60.0, float)
# A create that got no answer may still be running at Zoho: look for it only this long after
# we gave up on it, and create again only if it is not there.
ZOHO_CREATE_SETTLE_SECONDS = _number("ZOHO_CREATE_SETTLE_SECONDS", 120.0, float)
# A run lists Zoho once; before a create relies on that list when it is older than this, the run
# reads the customers Zoho got since (another integration may have created one of ours).
ZOHO_INDEX_MAX_AGE_SECONDS = _number("ZOHO_INDEX_MAX_AGE_SECONDS", 600.0, float)

# --- Alerts (billing_sync/operations/alerts.py) ---------------------------------------------------
# Alerts go to the "billing_sync.alerts" logger, and by mail to ADMINS when ZOHO_ALERT_MAIL_ADMINS.
ZOHO_ALERT_MAIL_ADMINS = _flag("ZOHO_ALERT_MAIL_ADMINS", False)
# Where the site is reached, e.g. https://billing.example.com: links add the admin's path. Empty:
# relative links (/admin/...).
ZOHO_ALERT_ADMIN_URL = env.str("ZOHO_ALERT_ADMIN_URL", default="")
# Alert when Zoho's block is known to last longer than this.
ZOHO_ALERT_BLOCK_SECONDS = _number("ZOHO_ALERT_BLOCK_SECONDS", 300.0, float)
# Alert when the last 24 hours used this share of ZOHO_DAILY_LIMIT - ZOHO_DAILY_RESERVE (0: never).
ZOHO_ALERT_DAILY_BUDGET_PERCENT = _number("ZOHO_ALERT_DAILY_BUDGET_PERCENT", 80.0, float)
# Where the team reads: Apprise URLs (slack://..., msteams://..., json://..., mailto://...),
# separated by commas or spaces; empty: none. They carry tokens: never printed or logged.
ZOHO_ALERT_URLS = [
    url for url in re.split(r"[\s,]+", env.str("ZOHO_ALERT_URLS", default="")) if url
]
ADMINS = _addresses("DJANGO_ADMINS")
SERVER_EMAIL = env.str("DJANGO_SERVER_EMAIL", default="root@localhost")
EMAIL_SUBJECT_PREFIX = "[CircleTel billing sync] "
# How mail leaves, e.g. smtp+tls://user:password@host:587; empty: Django's SMTP on localhost:25.
_EMAIL_URL = env.str("DJANGO_EMAIL_URL", default="")
if _EMAIL_URL:
    try:
        _EMAIL = env.email_url_config(_EMAIL_URL)
    except ImproperlyConfigured:
        # Never echo the URL: it may hold a password.
        raise ImproperlyConfigured(
            "DJANGO_EMAIL_URL is not an email URL: use e.g. smtp+tls://user:password@host:587."
        ) from None
    globals().update({key: value for key, value in _EMAIL.items() if value not in (None, "")})

# --- Scheduling (django-q2) ----------------------------------------------------------------------
# Scheduled and queued runs wait out Zoho blocks of up to this many seconds in all (a concurrency
# block lasts 5 s); a run that finds a longer block does nothing and the next one retries.
ZOHO_SCHEDULE_MAX_WAIT_SECONDS = _number("ZOHO_SCHEDULE_MAX_WAIT_SECONDS", 30.0, float)
# Scheduled runs take at most this many customers, so a run ends well inside
# Q_TASK_TIMEOUT_SECONDS even at the default budget (500 customers at 30 requests a minute: about
# 17 minutes).
ZOHO_SCHEDULE_BATCH_SIZE = _number("ZOHO_SCHEDULE_BATCH_SIZE", 500, int)
ZOHO_SYNC_EVERY_MINUTES = _number("ZOHO_SYNC_EVERY_MINUTES", 10, int)
# Saving a customer queues its sync once the transaction commits (one task however many saves),
# so that with a worker running an edit reaches Zoho within seconds.
ZOHO_SYNC_ON_SAVE = env.bool("ZOHO_SYNC_ON_SAVE", default=True)
Q_TASK_TIMEOUT_SECONDS = _number("Q_TASK_TIMEOUT_SECONDS", 3600, int)

# django-q2 clusters record their heartbeat (a status every 0.5 s, kept 3 s) in this cache when
# the database is the broker (Redis keeps it itself): a shared database table, so /healthz and
# /metrics in the web process see a worker running elsewhere. `migrate` creates the table.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "cluster_status": {
        "BACKEND": "django.core.cache.backends.db.DatabaseCache",
        "LOCATION": "django_q_cluster_status",
        # django-q2 rewrites its list of clusters without a timeout: with one it would expire
        # and a live cluster would vanish until its next heartbeat.
        "TIMEOUT": None,
    },
}

_BROKER_URL = env.str("Q_BROKER_URL", default="") or env.str("REDIS_URL", default="")
Q_CLUSTER = {
    "name": "billing_sync",
    "workers": _number("Q_WORKERS", 2, int),
    # A task running longer than this is killed; our runs are bounded well below it.
    "timeout": Q_TASK_TIMEOUT_SECONDS,
    # Must exceed timeout: a task not acknowledged within `retry` is handed to another worker,
    # and a task still running must never run twice at once (django-q 183, 614).
    "retry": Q_TASK_TIMEOUT_SECONDS + 600,
    # Deliver a failing task once: the default 0 redelivers it forever (django-q2 114). Retrying
    # customers is the sync service's job, and the next scheduled run does it.
    "max_attempts": 1,
    # Acknowledge failed tasks too, so the broker does not hand them out again.
    "ack_failures": True,
    # After downtime run a missed schedule once, not once for every slot it missed.
    "catch_up": False,
    "save_limit": 1000,
    "label": "Task queue",
    # django-q2 pops this key whenever Q_CLUSTER_NAME names another cluster, and fails if absent.
    "ALT_CLUSTERS": {},
    # Where clusters record their heartbeat with the database as broker (see CACHES).
    "cache": "cluster_status",
}
# django-q2 logs each task it queues at INFO: a command's or the web's output is ours, so they
# show its warnings only (unless LOG_LEVEL asks for more); the worker keeps its INFO log.
_IS_WORKER = sys.argv[1:2] == ["qcluster"]
Q_CLUSTER["log_level"] = env.str("LOG_LEVEL", default="INFO" if _IS_WORKER else "WARNING")
if _BROKER_URL:
    Q_CLUSTER["redis"] = _BROKER_URL
else:
    # The database is the broker: nothing else has to run.
    Q_CLUSTER["orm"] = "default"

# --- Health and metrics (billing_sync/operations/health.py and metrics.py) -----------------------
# /healthz answers 503 when no sync run has completed for longer than this: two schedule
# intervals, plus half an hour for a long run (500 customers take ~17 min) or a Zoho block.
ZOHO_HEALTH_MAX_RUN_AGE_SECONDS = _number(
    "ZOHO_HEALTH_MAX_RUN_AGE_SECONDS", 2 * ZOHO_SYNC_EVERY_MINUTES * 60 + 1800.0, float
)
# When set, /metrics asks for `Authorization: Bearer <token>` (a staff session also works);
# empty, it is open (counts and times only, no secret or personal data).
ZOHO_METRICS_TOKEN = env.str("ZOHO_METRICS_TOKEN", default="")
