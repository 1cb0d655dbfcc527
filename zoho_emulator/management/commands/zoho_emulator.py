"""Run the local Zoho Billing emulator in the foreground."""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from zoho_emulator import (
    EMULATOR_CLIENT_ID,
    EMULATOR_CLIENT_SECRET,
    EMULATOR_REFRESH_TOKEN,
    EmulatorConfig,
    ZohoEmulator,
)
from zoho_emulator.config import (
    ORGANIZATION_ERROR_STATUSES,
    ORGANIZATION_ERRORS,
    UNKNOWN_CUSTOM_FIELD_MODES,
)

DEFAULTS = EmulatorConfig()
# Settings the "Limits:" line of the announcement already shows.
LIMIT_SETTINGS = (
    "rate_limit_requests",
    "rate_limit_window_seconds",
    "block_seconds",
    "send_retry_after",
    "daily_limit",
)


class Command(BaseCommand):
    help = (
        "Serve a local Zoho Billing emulator (OAuth token endpoint + customers API) until Ctrl-C, "
        "and print the settings a client needs to use it."
    )
    # The emulator needs neither the database nor a valid Zoho configuration.
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="Interface to listen on.")
        parser.add_argument(
            "--port", type=int, default=8765, help="Port to listen on (0 picks a free one)."
        )
        parser.add_argument(
            "--rate-limit-requests",
            type=int,
            default=100,
            help="Requests the organization may make per rate-limit window before it is blocked.",
        )
        parser.add_argument(
            "--rate-limit-window",
            type=float,
            default=60.0,
            help="Length of the sliding rate-limit window, in seconds.",
        )
        parser.add_argument(
            "--block-seconds",
            type=float,
            default=600.0,
            help="How long a breach of the per-minute limit blocks the organization, in seconds.",
        )
        parser.add_argument(
            "--no-retry-after",
            action="store_true",
            help="Do not send a Retry-After header on 429 answers.",
        )
        parser.add_argument(
            "--daily-limit",
            type=int,
            default=None,
            help="Requests allowed per day (default: no daily limit).",
        )
        parser.add_argument(
            "--json",
            action="store_true",
            help="Announce with one JSON document on stdout (url, client settings without "
            "secrets, limits), then print nothing more there.",
        )
        self._add_auth_arguments(parser)
        self._add_behaviour_arguments(parser)

    def _add_auth_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--organization-error",
            choices=ORGANIZATION_ERRORS,
            default=DEFAULTS.organization_error,
            help=(
                "Zoho code answering a missing or wrong organization: 2 (invalid value), "
                "6041 (user not in this organization) or 9017 (user in no organization)."
            ),
        )
        parser.add_argument(
            "--organization-error-status",
            type=int,
            choices=ORGANIZATION_ERROR_STATUSES,
            default=DEFAULTS.organization_error_status,
            help="HTTP status of the organization error.",
        )
        parser.add_argument(
            "--scopes",
            default=",".join(DEFAULTS.scopes),
            help=(
                "Comma-separated OAuth scopes the issued tokens are granted (default: customers "
                "CREATE, READ, UPDATE); a missing one answers 401 code 57."
            ),
        )
        parser.add_argument(
            "--token-delay-seconds",
            type=float,
            default=DEFAULTS.token_delay_seconds,
            help="How late the token endpoint answers, in seconds.",
        )

    def _add_behaviour_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--custom-field-labels",
            default="",
            help="Comma-separated custom field labels the organization has defined.",
        )
        parser.add_argument(
            "--unknown-custom-field",
            choices=UNKNOWN_CUSTOM_FIELD_MODES,
            default=DEFAULTS.unknown_custom_field,
            help=(
                "What a custom field with an undefined label does: create it, drop it silently, "
                "or refuse the request (400 code 120129)."
            ),
        )
        parser.add_argument(
            "--number-custom-fields",
            default="",
            help="Comma-separated labels of number custom fields (values keep only digits).",
        )
        parser.add_argument(
            "--refuse-creates",
            action="store_true",
            help="Refuse every create, as an organization at its plan's customer limit.",
        )
        parser.add_argument(
            "--list-lag-seconds",
            type=float,
            default=DEFAULTS.list_lag_seconds,
            help="How long a new customer stays out of list and search answers, in seconds.",
        )
        parser.add_argument(
            "--email-filter-ignored",
            action="store_true",
            help="List customers as if the email query parameter were absent.",
        )
        parser.add_argument(
            "--sort-ignored",
            action="store_true",
            help="List customers in creation order whatever sort_column and sort_order say.",
        )
        parser.add_argument(
            "--vat-reg-no-dropped",
            action="store_true",
            help=(
                "Play an edition without VAT: vat_reg_no in a body is ignored and records do "
                "not carry it."
            ),
        )
        parser.add_argument(
            "--active-subscription-emails",
            default="",
            metavar="EMAIL[,EMAIL...]",
            help=(
                "Comma-separated emails of customers with an active subscription: marking them "
                "inactive is refused."
            ),
        )

    # The --json contract of billing_sync's ZohoCommand, kept here so that the emulator needs
    # nothing from the app it stands in for Zoho to.
    def execute(self, *args: Any, **options: Any) -> str | None:
        """With --json, a refusal (a bad option, a port in use) is one document too."""
        self.as_json = bool(options.get("json"))
        try:
            return super().execute(*args, **options)
        except CommandError as error:
            if self.as_json:
                self._write_json(
                    {"url": None, "settings": {}, "limits": {}, "changed": {}},
                    exit_code=error.returncode,
                    problems=[str(error)],
                )
            raise

    def handle(self, *args: Any, **options: Any) -> None:
        emulator = self._bind(self._config(options), options["host"], options["port"])
        if self.as_json:
            self._announce_json(emulator)
        else:
            self._announce(emulator)
        try:
            emulator.serve_forever()
        except KeyboardInterrupt:
            (self.stderr if self.as_json else self.stdout).write("Stopping the emulator.")
        finally:
            emulator.stop()

    def _config(self, options: dict[str, Any]) -> EmulatorConfig:
        try:
            return EmulatorConfig(
                rate_limit_requests=options["rate_limit_requests"],
                rate_limit_window_seconds=options["rate_limit_window"],
                block_seconds=options["block_seconds"],
                send_retry_after=not options["no_retry_after"],
                daily_limit=options["daily_limit"],
                organization_error=options["organization_error"],
                organization_error_status=options["organization_error_status"],
                scopes=_comma_separated(options["scopes"]),
                token_delay_seconds=options["token_delay_seconds"],
                custom_field_labels=_comma_separated(options["custom_field_labels"]),
                unknown_custom_field=options["unknown_custom_field"],
                number_custom_fields=_comma_separated(options["number_custom_fields"]),
                refuse_creates=options["refuse_creates"],
                list_lag_seconds=options["list_lag_seconds"],
                email_filter_ignored=options["email_filter_ignored"],
                sort_ignored=options["sort_ignored"],
                vat_reg_no_dropped=options["vat_reg_no_dropped"],
                active_subscription_emails=_comma_separated(options["active_subscription_emails"]),
            )
        except ValueError as error:
            raise CommandError(str(error)) from error

    def _bind(self, config: EmulatorConfig, host: str, port: int) -> ZohoEmulator:
        try:
            return ZohoEmulator(config).bind(host, port)
        except OSError as error:
            raise CommandError(f"Cannot listen on {host}:{port}: {error}") from error

    def _announce(self, emulator: ZohoEmulator) -> None:
        config = emulator.config
        self.stdout.write(self.style.SUCCESS(f"Zoho Billing emulator listening on {emulator.url}"))
        self.stdout.write("Point the client at it with:")
        self.stdout.write(f"  ZOHO_ACCOUNTS_URL={emulator.accounts_url}")
        self.stdout.write(f"  ZOHO_API_BASE_URL={emulator.api_base_url}")
        self.stdout.write(f"  ZOHO_CLIENT_ID={EMULATOR_CLIENT_ID}")
        self.stdout.write(f"  ZOHO_ORGANIZATION_ID={config.organization_id}")
        self.stdout.write("The emulator's own dummy credentials (not real secrets):")
        self.stdout.write(f"  ZOHO_CLIENT_SECRET={EMULATOR_CLIENT_SECRET}")
        self.stdout.write(f"  ZOHO_REFRESH_TOKEN={EMULATOR_REFRESH_TOKEN}")
        limits = (
            f"Limits: {config.rate_limit_requests} requests per "
            f"{config.rate_limit_window_seconds:g} s, block {config.block_seconds:g} s, "
            f"daily {config.daily_limit or 'unlimited'}, "
            f"Retry-After {'on' if config.send_retry_after else 'off'}."
        )
        self.stdout.write(limits)
        changed = _changed_settings(config)
        if changed:
            self.stdout.write("Changed from the defaults: " + "; ".join(changed) + ".")
        self.stdout.write(
            "Control: GET /__emulator__/state, POST /__emulator__/reset, /config, /faults."
        )
        self.stdout.write("Press Ctrl-C to stop.")
        self.stdout.flush()

    def _announce_json(self, emulator: ZohoEmulator) -> None:
        """The announcement as one document; the dummy secrets stay out (use the text one)."""
        config = emulator.config
        self._write_json(
            {
                "url": emulator.url,
                "settings": {
                    "ZOHO_ACCOUNTS_URL": emulator.accounts_url,
                    "ZOHO_API_BASE_URL": emulator.api_base_url,
                    "ZOHO_CLIENT_ID": EMULATOR_CLIENT_ID,
                    "ZOHO_ORGANIZATION_ID": config.organization_id,
                },
                "limits": {name: getattr(config, name) for name in LIMIT_SETTINGS},
                "changed": _changed_values(config),
            },
            exit_code=0,
            problems=[],
        )

    def _write_json(self, values: dict[str, Any], *, exit_code: int, problems: list[str]) -> None:
        document = {"command": "zoho_emulator", **values}
        document.update(exit_code=exit_code, problems=problems)
        self.stdout.write(json.dumps(document, default=str))
        self.stdout.flush()


def _comma_separated(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _changed_values(config: EmulatorConfig) -> dict[str, Any]:
    """Each setting that differs from the default and is not a limit, with its value."""
    changed: dict[str, Any] = {}
    for field in fields(config):
        value = getattr(config, field.name)
        if field.name in LIMIT_SETTINGS or value == getattr(DEFAULTS, field.name):
            continue
        changed[field.name] = list(value) if isinstance(value, tuple) else value
    return changed


def _changed_settings(config: EmulatorConfig) -> list[str]:
    """`name=value` for each setting that differs from the default and is not a limit."""
    return [
        f"{name}={(','.join(value) or '(none)') if isinstance(value, list) else value}"
        for name, value in _changed_values(config).items()
    ]
