"""Settings of the one emulated Zoho Billing organization, and its fixed dummy credentials."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

EMULATOR_CLIENT_ID = "emulator-client-id"
EMULATOR_CLIENT_SECRET = "emulator-client-secret"  # noqa: S105 - a public dummy, not a secret
EMULATOR_REFRESH_TOKEN = "emulator-refresh-token"  # noqa: S105 - a public dummy, not a secret
EMULATOR_ORGANIZATION_ID = "6179546000000027001"

NOT_FOUND_STYLES = ("400/3004", "404/1002")


@dataclass(frozen=True)
class EmulatorConfig:
    """How the emulated organization authenticates clients, limits them and answers them."""

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

    def __post_init__(self) -> None:
        problems = config_problems(self)
        if problems:
            raise ValueError("Invalid emulator config: " + " ".join(problems))

    def with_changes(self, **changes: object) -> EmulatorConfig:
        """Return a copy with `changes` applied; unknown names raise ValueError."""
        unknown = sorted(set(changes) - {field.name for field in fields(self)})
        if unknown:
            raise ValueError(f"Unknown emulator setting(s): {', '.join(unknown)}.")
        return replace(self, **changes)


def config_problems(config: EmulatorConfig) -> list[str]:
    """Return one sentence per invalid setting; empty when the config is usable."""
    checks = [
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
            config.not_found_style in NOT_FOUND_STYLES,
            f"not_found_style must be one of {NOT_FOUND_STYLES}.",
        ),
    ]
    return [message for ok, message in checks if not ok]


def _is_number(value: object, *, minimum: float | None = None, positive: bool = False) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if positive and value <= 0:
        return False
    return minimum is None or value >= minimum
