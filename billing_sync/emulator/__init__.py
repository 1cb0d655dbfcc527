"""A local Zoho Billing emulator: a real HTTP server (stdlib only) for the demo and the tests.

It serves the Zoho Accounts token endpoint (`POST /oauth/v2/token`), the customers API under
`/billing/v1`, with Zoho's auth, organization header, error bodies and org-wide rate limits, and
control endpoints under `/__emulator__/` (state, reset, config) for a separately running copy.
Faults can be injected to rehearse errors, timeouts and lost responses.
"""

from __future__ import annotations

from billing_sync.emulator.config import (
    EMULATOR_CLIENT_ID,
    EMULATOR_CLIENT_SECRET,
    EMULATOR_ORGANIZATION_ID,
    EMULATOR_REFRESH_TOKEN,
    EmulatorConfig,
)
from billing_sync.emulator.emulator import RequestRecord, ZohoEmulator
from billing_sync.emulator.faults import FAULT_KINDS

__all__ = [
    "EMULATOR_CLIENT_ID",
    "EMULATOR_CLIENT_SECRET",
    "EMULATOR_ORGANIZATION_ID",
    "EMULATOR_REFRESH_TOKEN",
    "FAULT_KINDS",
    "EmulatorConfig",
    "RequestRecord",
    "ZohoEmulator",
]
