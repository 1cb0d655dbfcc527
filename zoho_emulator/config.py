"""Settings of the one emulated Zoho Billing organization, and its fixed dummy credentials."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

EMULATOR_CLIENT_ID = "emulator-client-id"
EMULATOR_CLIENT_SECRET = "emulator-client-secret"  # noqa: S105 - a public dummy, not a secret
EMULATOR_REFRESH_TOKEN = "emulator-refresh-token"  # noqa: S105 - a public dummy, not a secret
EMULATOR_ORGANIZATION_ID = "6179546000000027001"

NOT_FOUND_STYLES = ("400/3004", "404/1002")
ORGANIZATION_ERRORS = ("2", "6041", "9017")
ORGANIZATION_ERROR_STATUSES = (400, 401, 403)
UNKNOWN_CUSTOM_FIELD_MODES = ("create", "drop", "refuse")
CUSTOMER_SCOPES = (
    "ZohoSubscriptions.customers.CREATE",
    "ZohoSubscriptions.customers.READ",
    "ZohoSubscriptions.customers.UPDATE",
)


@dataclass(frozen=True)
class EmulatorConfig:
    """How the emulated organization authenticates clients, limits them and answers them.

    Behaviour switches (each default is the emulator's original behaviour):
    `organization_error`/`organization_error_status` shape the answer to a missing or wrong
    organization; `scopes` are what every access token is granted (checked at each request);
    `custom_field_labels`, `unknown_custom_field` and `number_custom_fields` define the
    organization's custom fields; `refuse_creates` refuses every create (a plan limit);
    `list_lag_seconds` hides new customers from lists; `email_filter_ignored` and `sort_ignored`
    make the list ignore those parameters; `token_delay_seconds` slows the token endpoint;
    `vat_reg_no_dropped` is an edition without VAT (`vat_reg_no` ignored in bodies, absent from
    records); `active_subscription_emails` are customers' emails (any case) with an active
    subscription, which cannot be marked inactive.
    """

    client_id: str = EMULATOR_CLIENT_ID
    client_secret: str = EMULATOR_CLIENT_SECRET
    refresh_token: str = EMULATOR_REFRESH_TOKEN
    organization_id: str = EMULATOR_ORGANIZATION_ID
    rate_limit_requests: int = 100
    rate_limit_window_seconds: float = 60.0
    block_seconds: float = 600.0
    send_retry_after: bool = True
    daily_limit: int | None = None
    daily_window_seconds: float = 86400.0
    concurrency_limit: int | None = None
    token_ttl_seconds: float = 3600
    token_refresh_limit: int = 10
    token_refresh_window_seconds: float = 600.0
    max_live_tokens: int = 15
    not_found_style: str = "400/3004"
    display_name_unique: bool = False
    organization_error: str = "2"
    organization_error_status: int = 400
    scopes: tuple[str, ...] = CUSTOMER_SCOPES
    custom_field_labels: tuple[str, ...] = ()
    unknown_custom_field: str = "create"
    number_custom_fields: tuple[str, ...] = ()
    refuse_creates: bool = False
    list_lag_seconds: float = 0.0
    email_filter_ignored: bool = False
    sort_ignored: bool = False
    token_delay_seconds: float = 0.0
    vat_reg_no_dropped: bool = False
    active_subscription_emails: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        problems = config_problems(self)
        if problems:
            raise ValueError("Invalid emulator config: " + " ".join(problems))

    def with_changes(self, **changes: object) -> EmulatorConfig:
        """Return a copy with `changes` applied; unknown names raise ValueError.

        Lists become tuples, so JSON arrays can set the tuple settings.
        """
        unknown = sorted(set(changes) - {field.name for field in fields(self)})
        if unknown:
            raise ValueError(f"Unknown emulator setting(s): {', '.join(unknown)}.")
        tupled = {
            name: tuple(value) if isinstance(value, list) else value
            for name, value in changes.items()
        }
        return replace(self, **tupled)


def config_problems(config: EmulatorConfig) -> list[str]:
    """Return one sentence per invalid setting; empty when the config is usable."""
    checks = _limit_checks(config) + _behaviour_checks(config)
    return [message for ok, message in checks if not ok]


def _limit_checks(config: EmulatorConfig) -> list[tuple[bool, str]]:
    return [
        (_is_number(config.rate_limit_requests, minimum=1), "rate_limit_requests must be >= 1."),
        (
            _is_number(config.rate_limit_window_seconds, positive=True),
            "rate_limit_window_seconds must be > 0.",
        ),
        (_is_number(config.block_seconds, minimum=0), "block_seconds must be >= 0."),
        (
            config.daily_limit is None or _is_number(config.daily_limit, minimum=0),
            "daily_limit must be None or >= 0.",
        ),
        (
            _is_number(config.daily_window_seconds, positive=True),
            "daily_window_seconds must be > 0.",
        ),
        (
            config.concurrency_limit is None or _is_number(config.concurrency_limit, minimum=1),
            "concurrency_limit must be None or >= 1.",
        ),
        (_is_number(config.token_ttl_seconds, positive=True), "token_ttl_seconds must be > 0."),
        (_is_number(config.token_refresh_limit, minimum=1), "token_refresh_limit must be >= 1."),
        (
            _is_number(config.token_refresh_window_seconds, positive=True),
            "token_refresh_window_seconds must be > 0.",
        ),
        (_is_number(config.max_live_tokens, minimum=1), "max_live_tokens must be >= 1."),
        (
            _is_number(config.token_delay_seconds, minimum=0),
            "token_delay_seconds must be >= 0.",
        ),
        (_is_number(config.list_lag_seconds, minimum=0), "list_lag_seconds must be >= 0."),
    ]


def _behaviour_checks(config: EmulatorConfig) -> list[tuple[bool, str]]:
    flags = (
        "display_name_unique",
        "refuse_creates",
        "email_filter_ignored",
        "sort_ignored",
        "vat_reg_no_dropped",
    )
    labels = ("scopes", "custom_field_labels", "number_custom_fields", "active_subscription_emails")
    return [
        (
            config.not_found_style in NOT_FOUND_STYLES,
            f"not_found_style must be one of {NOT_FOUND_STYLES}.",
        ),
        (
            config.organization_error in ORGANIZATION_ERRORS,
            f"organization_error must be one of {ORGANIZATION_ERRORS}.",
        ),
        (
            not isinstance(config.organization_error_status, bool)
            and config.organization_error_status in ORGANIZATION_ERROR_STATUSES,
            f"organization_error_status must be one of {ORGANIZATION_ERROR_STATUSES}.",
        ),
        (
            config.unknown_custom_field in UNKNOWN_CUSTOM_FIELD_MODES,
            f"unknown_custom_field must be one of {UNKNOWN_CUSTOM_FIELD_MODES}.",
        ),
        *[
            (isinstance(getattr(config, name), bool), f"{name} must be true or false.")
            for name in flags
        ],
        *[
            (_is_text_tuple(getattr(config, name)), f"{name} must be a tuple of non-empty strings.")
            for name in labels
        ],
    ]


def _is_number(value: object, *, minimum: float | None = None, positive: bool = False) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if positive and value <= 0:
        return False
    return minimum is None or value >= minimum


def _is_text_tuple(value: object) -> bool:
    return isinstance(value, tuple) and all(
        isinstance(item, str) and item.strip() for item in value
    )
