"""A local Zoho Billing emulator: a real HTTP server (stdlib only) for the demo and the tests.

It serves the Zoho Accounts token endpoint (`POST /oauth/v2/token`) and the customers API under
`/billing/v1` the project's client uses (list and filter, read, create, update, mark active or
inactive), with Zoho's auth, scopes, organization header, error bodies and org-wide rate limits.
Faults can be injected to rehearse errors, timeouts, lost responses and errors after the work was
done; EmulatorConfig switches play the ways real Zoho may answer differently (organization errors,
missing scopes, custom-field rules, a plan limit on creates, list lag, ignored list parameters, a
slow token endpoint, an edition without VAT, customers whose active subscriptions keep them
active).

Control endpoints under `/__emulator__/`, for a separately running copy:
- `GET state`: customers, request and token counts, block, faults and the current config;
- `POST reset`: forget all state, keep the config;
- `POST config`: a JSON object of EmulatorConfig changes, applied live (arrays set tuple settings,
  e.g. `{"scopes": ["ZohoSubscriptions.customers.READ"]}`); answers the new config;
- `POST faults`: random faults on (`random_rate`, `kinds`, `seed`, `delay`) or off (`clear`).
"""

from __future__ import annotations

from zoho_emulator.config import (
    EMULATOR_CLIENT_ID,
    EMULATOR_CLIENT_SECRET,
    EMULATOR_ORGANIZATION_ID,
    EMULATOR_REFRESH_TOKEN,
    EmulatorConfig,
)
from zoho_emulator.emulator import RequestRecord, ZohoEmulator
from zoho_emulator.faults import FAULT_KINDS

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
