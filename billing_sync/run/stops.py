"""Why a run stops: the errors that end a whole run, because no other customer of it would
fare better, and the one list of them (RUN_STOPPERS).

The Zoho client's own (zoho/errors.py, ZOHO_RUN_STOPPERS): a block longer than the run may
wait, the day's budget spent, the token refresh throttled, Zoho unreachable for longer than the
run may wait, and every ZohoConfigError (Zoho refusing the set-up: wrong organization, missing
scope). The sync's, defined here: Zoho refusing the custom field that carries our account
number, refusing creates alike several times in a row, or not keeping the account number, the
VAT number or the billing address as sent; and the account number that could not be checked.
A run that meets one leaves what it had not finished `failed` with the error's message
(live_run.py `LiveRun._stop`); a ZohoConfigError exits 2. A database that stays away
(database.DatabaseLost) ends a run too, but as a crash does: what it could not write is left
for the next run."""

from __future__ import annotations

from datetime import datetime

from billing_sync.models import Customer
from billing_sync.times import in_utc
from billing_sync.zoho.errors import ZOHO_RUN_STOPPERS, ZohoConfigError, ZohoError, ZohoInvalidData
from billing_sync.zoho.records import ZohoCustomer


class AccountFieldRefused(ZohoConfigError):
    """Zoho refused the custom field that carries our account number: the set-up is wrong."""

    def __init__(self, exc: ZohoInvalidData, *, account_field: str) -> None:
        super().__init__(
            f"Zoho refused the custom field {account_field!r} that carries our account number: "
            f"{exc.message}. {account_field_fix(account_field)}",
            status=exc.status,
            code=exc.code,
            path=exc.path,
        )


class SystemicRefusal(ZohoConfigError):
    """Creates of several customers in a row were refused alike: the organization refuses."""

    def __init__(self, exc: ZohoInvalidData, *, customers: int) -> None:
        super().__init__(
            f"Zoho refused the creates of {customers} customers in a row with the same answer "
            f"({exc.message}), naming none of their fields: the organization is refusing "
            "creates (a plan limit, an organization setting, or a custom field it lacks, see "
            "ZOHO_ACCOUNT_NUMBER_FIELD); fix that in Zoho, then rerun",
            status=exc.status,
            code=exc.code,
            path=exc.path,
        )


class AccountFieldUnchecked(ZohoError):
    """Whether Zoho now keeps our account number could not be checked: no creates this run."""

    def __init__(self, error: ZohoError) -> None:
        super().__init__(
            "could not check whether Zoho now keeps our account number in its custom field "
            f"({error}); no customer is created until it does, the next run checks again"
        )


class AccountNumbersNotKeptYet(ZohoConfigError):
    """Customers Zoho holds without our account number were written again lately, in vain: no
    run creates anyone until the next attempt (once an interval, or a person's run)."""

    def __init__(self, *, checked_at: datetime, next_at: datetime) -> None:
        super().__init__(
            f"Zoho did not keep our account number when it was last written "
            f"({in_utc(checked_at)}): no customer is created until it "
            f"does. The schedule writes it again after {in_utc(next_at)}; "
            "once the custom field is fixed in Zoho, `manage.py zoho_sync_customers` does it "
            "at once"
        )


class AccountNumberNotKept(ZohoConfigError):
    """Zoho holds the customer, but its answer does not carry our account number as sent.

    The customer is linked (never created twice); the run stops, since every later create
    would lose its account number the same way.
    """

    def __init__(
        self, customer: Customer, zoho_customer: ZohoCustomer, *, account_field: str
    ) -> None:
        found = zoho_customer.account_number
        carried = f"carries {found!r}" if found else "carries none"
        super().__init__(
            f"Zoho keeps customer {customer.account_number} as {zoho_customer.customer_id}, but "
            f"its answer {carried} in the custom field {account_field!r} where we sent "
            f"{customer.account_number!r}: the organization lacks that field, or it is named or "
            f"typed differently. {account_field_fix(account_field)}. The customer is linked; "
            "`zoho_verify --deep` lists it until its account number is written"
        )
        self.customer_id = customer.pk


class VatNumberNotKept(ZohoConfigError):
    """Zoho holds the customer, but its answer does not carry our VAT number as sent.

    Whether an organization keeps `vat_reg_no` depends on its edition (where VAT applies), which
    we cannot see: the customer is linked (never created twice), flagged, and not in step (the
    next sync sends the VAT number again); the run stops, since every later create would lose
    its VAT number the same way.
    """

    def __init__(self, customer: Customer, zoho_customer: ZohoCustomer) -> None:
        found = zoho_customer.vat_reg_no
        carried = (
            "carries no vat_reg_no at all" if found is None else f"carries vat_reg_no {found!r}"
        )
        super().__init__(
            f"Zoho keeps customer {customer.account_number} as {zoho_customer.customer_id}, but "
            f"its answer {carried} where we sent the VAT number {customer.vat_number.strip()!r}: "
            "Zoho keeps VAT numbers only where VAT applies to the organization. Check in Zoho "
            "Billing that the organization is VAT registered (Settings > Taxes, VAT), then rerun: "
            "the customer is linked, and the next sync sends its VAT number again"
        )
        self.customer_id = customer.pk

    def flag(self) -> None:
        """Mark the linked customer whose Zoho record lacks our VAT number, saying why."""
        Customer.objects.filter(pk=self.customer_id).update(
            zoho_vat_number_missing=True, zoho_last_error=str(self)
        )


class AddressNotKept(ZohoConfigError):
    """Zoho holds the customer, but its answer holds our billing address otherwise than sent
    (Zoho rewrote a part, or dropped it): the customer is linked and not in step (the next
    sync sends the address again), and the run stops, since the next would fare the same."""

    def __init__(
        self, customer: Customer, zoho_customer: ZohoCustomer, parts: list[tuple[str, str, str]]
    ) -> None:
        differ = "; ".join(f"{field}: sent {sent!r}, holds {held!r}" for field, sent, held in parts)
        super().__init__(
            f"Zoho keeps customer {customer.account_number} as {zoho_customer.customer_id}, but "
            f"its answer holds the billing address otherwise than we sent it ({differ}): "
            "compare the customer in Zoho Billing; where Zoho writes a part its own way, write "
            "ours the same way, then rerun (the customer is linked; the next sync sends the "
            "address again)"
        )


def account_field_fix(account_field: str) -> str:
    """What a person does when Zoho does not keep our account number."""
    return (
        f"In Zoho Billing add a customer custom field of type text labelled {account_field!r} "
        "(Settings > Preferences > Customers > Custom Fields), or set ZOHO_ACCOUNT_NUMBER_FIELD "
        "to the label of the text field that should carry the account number"
    )


class RunInterrupted(Exception):
    """A person pressed Ctrl-C: the run stops where it is, as a run stopper stops it."""

    def __init__(self) -> None:
        super().__init__(
            "Interrupted (Ctrl-C) before the run ended: the customers it had not finished are "
            "left failed, for `zoho_retry_failed` or the schedule"
        )


RUN_STOPPERS: tuple[type[ZohoError], ...] = (
    *ZOHO_RUN_STOPPERS,
    AccountFieldUnchecked,
    AccountNumbersNotKeptYet,
)
