"""App configuration for zoho_emulator: it has no models, only the `zoho_emulator` command."""

from django.apps import AppConfig


class ZohoEmulatorConfig(AppConfig):
    """A local Zoho Billing emulator for the demo, the tests and the benchmarks."""

    name = "zoho_emulator"
    verbose_name = "Zoho Billing emulator"
