"""Run the local Zoho Billing emulator in the foreground."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing_sync.emulator import (
    EMULATOR_CLIENT_ID,
    EMULATOR_CLIENT_SECRET,
    EMULATOR_REFRESH_TOKEN,
    EmulatorConfig,
    ZohoEmulator,
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

    def handle(self, *args: Any, **options: Any) -> None:
        emulator = self._bind(self._config(options), options["host"], options["port"])
        self._announce(emulator)
        try:
            emulator.serve_forever()
        except KeyboardInterrupt:
            self.stdout.write("Stopping the emulator.")
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
        self.stdout.write("Control: GET /__emulator__/state, POST /__emulator__/reset, /config.")
        self.stdout.write("Press Ctrl-C to stop.")
        self.stdout.flush()
