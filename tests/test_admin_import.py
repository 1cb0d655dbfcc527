"""Import and Export on the admin's customer list: a preview of what the import will create,
update and refuse before a person confirms; the rows go through the command's own service."""

from __future__ import annotations

import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from billing_sync.models import Customer, CustomerImport, ImportStatus, SyncStatus, SyncTrigger
from tests.helpers import logged_in

pytestmark = pytest.mark.django_db

IMPORT = reverse("admin:billing_sync_customer_import")
CONFIRM = reverse("admin:billing_sync_customer_process_import")
EXPORT = reverse("admin:billing_sync_customer_export")
CHANGELIST = reverse("admin:billing_sync_customer_changelist")
UPLOAD = (
    "account_number;email;first_name;last_name;company_name\r\n"
    "CT-2025-00012;thandi.nkosi@example.co.za;Thandi;Nkosi;\r\n"
    "CT-2025-00014;accounts@karoo-farms.example;Anele;Dlamini;Karoo Farms (Pty) Ltd\r\n"
    "CT-2025-00016;not-an-email;Lerato;Mokoena;\r\n"
    "CT-2025-00017;johan@capeflow.example;Johan;van Wyk;CapeFlow\r\n"
)


@pytest.fixture
def operator() -> Client:
    return logged_in("view_customer", "add_customer", "change_customer", "view_customerimport")


def upload(client: Client, content: str | bytes, name: str = "customers.csv"):
    data = content.encode("utf-8-sig") if isinstance(content, str) else content
    return client.post(IMPORT, {"format": "0", "import_file": SimpleUploadedFile(name, data)})


def confirm(client: Client, preview):
    return client.post(CONFIRM, preview.context["confirm_form"].initial, follow=True)


def test_the_preview_shows_what_will_happen_and_confirm_imports_the_good_rows(
    operator, make_customer
):
    make_customer(
        account_number="CT-2025-00012",
        email="thandi.nkosi@example.co.za",
        first_name="Thandi",
        last_name="Nkosi",
    )
    make_customer(
        account_number="CT-2025-00014",
        email="accounts@karoo-farms.example",
        first_name="Anele",
        last_name="Dlamini",
        company_name="Karoo Farms",
    )

    preview = upload(operator, UPLOAD)

    page = " ".join(preview.content.decode().split())
    assert preview.status_code == 200
    assert preview.context["confirm_form"] is not None  # a refused row does not block the rest
    assert "4 row(s): 1 to create, 1 to update, 1 unchanged, 1 refused." in page
    assert [
        (o.line, o.account_number, o.action, o.fields) for o in preview.context["result"].changes
    ] == [
        (2, "CT-2025-00012", "unchanged", ()),
        (3, "CT-2025-00014", "update", ("company_name",)),
        (
            5,
            "CT-2025-00017",
            "create",
            ("account_number", "email", "first_name", "last_name", "company_name"),
        ),
    ]
    assert "&#x27;not-an-email&#x27; is not a valid email address" in page
    (refused,) = preview.context["result"].refused
    assert (refused.line, refused.problems[0].column) == (4, "email")
    assert Customer.objects.count() == 2  # the preview wrote nothing
    assert Customer.objects.get(account_number="CT-2025-00014").company_name == "Karoo Farms"

    done = confirm(operator, preview)

    assert done.redirect_chain[-1][0] == CHANGELIST
    shown = [str(message) for message in done.context["messages"]]
    assert shown[0].startswith("Import #")
    assert "4 row(s), 1 created, 1 updated, 1 unchanged, 1 refused" in shown[0]
    assert shown[1] == (
        "Refused, not imported: line 4, email: 'not-an-email' is not a valid email address."
    )
    assert set(Customer.objects.values_list("account_number", flat=True)) == {
        "CT-2025-00012",
        "CT-2025-00014",
        "CT-2025-00017",
    }
    assert Customer.objects.get(account_number="CT-2025-00014").company_name == (
        "Karoo Farms (Pty) Ltd"
    )
    preview_record, live_record = CustomerImport.objects.order_by("pk")
    assert (preview_record.dry_run, live_record.dry_run) == (True, False)
    assert live_record.trigger == SyncTrigger.ADMIN
    assert live_record.name == "customers.csv"
    assert list(live_record.refusals.values_list("line", "column")) == [(4, "email")]


def test_an_unknown_column_is_named_and_nothing_can_be_confirmed(operator):
    preview = upload(operator, "account_number,email,Region\nCT-1,a@example.co.za,Cape\n")

    assert "confirm_form" not in preview.context or not preview.context["confirm_form"]
    assert "unknown column(s) &#x27;Region&#x27;" in preview.content.decode()
    assert not Customer.objects.exists()
    assert CustomerImport.objects.get().status == ImportStatus.REFUSED


def test_a_file_that_is_not_utf8_is_named_and_recorded(operator):
    content = "account_number,email,first_name\nCT-1,a@example.co.za,Ren\xe9\n".encode("cp1252")

    preview = upload(operator, content)

    assert "Nothing imported: not UTF-8 text (byte 0xe9)" in preview.content.decode()
    record = CustomerImport.objects.get()
    assert (record.status, record.name) == (ImportStatus.REFUSED, "customers.csv")


def test_export_carries_the_zoho_id_and_status_and_imports_back_unchanged(operator, make_customer):
    make_customer(
        account_number="CT-2025-00012",
        zoho_billing_customer_id="6179546000000100001",
        zoho_sync_status=SyncStatus.SYNCED,
    )
    make_customer(account_number="CT-2025-00013", company_name="Karoo Farms; Pty")

    response = operator.post(EXPORT, {"format": "0"})

    assert response.status_code == 200
    assert response["Content-Disposition"].startswith('attachment; filename="Customer-')
    exported = response.content.decode()
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert list(rows[0]) == [
        "account_number",
        "email",
        "first_name",
        "last_name",
        "company_name",
        "phone",
        "billing_attention",
        "billing_street",
        "billing_street2",
        "billing_city",
        "billing_state",
        "billing_zip",
        "billing_country",
        "vat_number",
        "account_status",
        "account_type",
        "created_at",
        "zoho_billing_customer_id",
        "zoho_sync_status",
    ]
    assert [
        (r["account_number"], r["zoho_billing_customer_id"], r["zoho_sync_status"]) for r in rows
    ] == [
        ("CT-2025-00012", "6179546000000100001", "synced"),
        ("CT-2025-00013", "", "pending"),
    ]

    preview = upload(operator, exported)

    page = " ".join(preview.content.decode().split())
    assert "2 row(s): 0 to create, 0 to update, 2 unchanged, 0 refused." in page


@pytest.mark.parametrize(
    "codenames", [("view_customer",), ("view_customer", "change_customer")], ids=["view", "change"]
)
def test_only_people_who_may_add_and_change_customers_can_import(codenames):
    person = logged_in(*codenames)

    listing = person.get(CHANGELIST).content.decode()

    assert "import_link" not in listing
    assert "export_link" in listing
    assert person.get(IMPORT).status_code == 403
    assert person.post(EXPORT, {"format": "0"}).status_code == 200
