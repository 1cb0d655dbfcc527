"""Zoho unreachable (connections refused, through a forwarder the test cuts): nothing can have
been created, so no settle wait and no failed attempt per customer; the run waits for Zoho as for
a block, within --max-wait, then stops with one message, and its customers stay retryable."""

from __future__ import annotations

import threading

import pytest

from billing_sync.models import AttemptOutcome, Customer, SyncAttempt, SyncRun, SyncStatus
from billing_sync.run.report import RunObserver
from billing_sync.run.runs import customers_backfill
from billing_sync.zoho.client import ZohoClient
from billing_sync.zoho.config import zoho_config
from billing_sync.zoho.errors import ZohoUnreachable, ZohoUnreachableTooLong
from tests.commands import run, run_json
from tests.forwarder import Forwarder, forwarding
from tests.helpers import zoho_account_counts, zoho_posts
from zoho_emulator.emulator import API_PREFIX

pytestmark = pytest.mark.django_db


@pytest.fixture
def zoho_link(emulator, settings):
    """The API reached through a forwarder the test controls (tokens come straight)."""
    host, port = emulator.url.removeprefix("http://").split(":")
    with forwarding(host, int(port)) as forwarder:
        settings.ZOHO_API_BASE_URL = f"http://127.0.0.1:{forwarder.port}{API_PREFIX}"
        yield forwarder


def test_a_backfill_with_zoho_unreachable_stops_at_once_with_one_message(
    emulator, zoho_link, make_customer
):
    customers = [make_customer() for _ in range(6)]
    zoho_link.cut()

    output, code = run("zoho_backfill_customers", "--max-wait", "0")

    assert code == 1
    assert "Traceback" not in output
    message = (
        f"Zoho unreachable at 127.0.0.1:{zoho_link.port}: connection refused; check the "
        "network, a proxy, ZOHO_DATA_CENTER"
    )
    assert f"Run stopped: {message}" in output
    run_record = SyncRun.objects.latest("pk")
    assert run_record.stop_reason.startswith(message)
    assert not run_record.stop_needs_setup  # exit 1: it passes with the network
    assert not SyncAttempt.objects.exists()  # no failed attempt per customer
    assert run_record.unreached_count == 6
    for customer in customers:
        customer.refresh_from_db()
        assert customer.zoho_sync_status == SyncStatus.FAILED  # retryable
        assert customer.zoho_create_sent_at is None  # nothing can have been created
    assert emulator.request_log == []

    zoho_link.restore()
    report = customers_backfill(trigger="command")

    assert (report.ok, report.synced_count) == (True, 6)
    assert zoho_account_counts(emulator) == {c.account_number: 1 for c in customers}


def test_the_json_document_says_why_a_run_stopped_when_zoho_is_unreachable(
    emulator, zoho_link, make_customer
):
    make_customer()
    zoho_link.cut()

    document, code = run_json("zoho_sync_customers", "--max-wait", "0")

    assert code == 1
    assert document["stopped"]["needs_setup"] is False
    assert document["stopped"]["reason"].startswith("Zoho unreachable at 127.0.0.1:")
    assert document["customers"] == []
    assert document["counts"]["unreached"] == 1


class CutAfter(RunObserver):
    """Cuts the link to Zoho once `count` customers have been worked on."""

    def __init__(self, link: Forwarder, count: int) -> None:
        self.link, self.count = link, count

    def customer_started(self, index, total, customer) -> None:
        if index == self.count + 1:
            self.link.cut()


def test_zoho_lost_part_way_leaves_the_rest_retryable_and_spends_no_attempt_on_them(
    emulator, zoho_link, make_customer, settings
):
    settings.ZOHO_CREATE_SETTLE_SECONDS = 600  # a wait for a create in doubt would show
    customers = [make_customer() for _ in range(8)]

    report = customers_backfill(trigger="command", max_wait=0, observer=CutAfter(zoho_link, 3))

    assert report.stop_reason.startswith("Zoho unreachable at")
    assert (report.synced_count, report.unreached_count, report.failed_count) == (3, 5, 5)
    finals = SyncAttempt.objects.filter(run=report.run)
    assert set(finals.values_list("outcome", flat=True)) == {AttemptOutcome.CREATED}
    assert finals.count() == 3  # the three created: no attempt for those never sent
    rest = Customer.objects.filter(zoho_billing_customer_id__isnull=True)
    assert rest.count() == 5
    assert set(rest.values_list("zoho_sync_status", flat=True)) == {SyncStatus.FAILED}
    assert not rest.filter(zoho_create_sent_at__isnull=False).exists()  # no settle wait owed

    zoho_link.restore()
    again = customers_backfill(trigger="command")

    assert (again.ok, again.synced_count) == (True, 5)
    assert zoho_posts(emulator) == 8  # one create each: no duplicate, none lost
    assert zoho_account_counts(emulator) == {c.account_number: 1 for c in customers}


def test_a_run_waits_for_zoho_to_come_back_within_max_wait(emulator, zoho_link, make_customer):
    customers = [make_customer() for _ in range(3)]
    zoho_link.cut()
    threading.Timer(1.0, zoho_link.restore).start()

    output, code = run("zoho_backfill_customers", "--max-wait", "20")

    assert code == 0
    assert f"Zoho unreachable at 127.0.0.1:{zoho_link.port}: connection refused" in output
    assert "looking again at" in output
    assert SyncAttempt.objects.filter(outcome=AttemptOutcome.FAILED).count() == 0
    assert zoho_account_counts(emulator) == {c.account_number: 1 for c in customers}
    # One list for the index, one look (the probe), three creates.
    assert [(r.method, r.path) for r in emulator.request_log] == [
        ("GET", "/customers"),
        ("GET", "/customers"),
        *[("POST", "/customers")] * 3,
    ]


def test_a_read_with_zoho_unreachable_names_the_host_and_the_reason(emulator, zoho_link):
    zoho_link.cut()
    client = ZohoClient(zoho_config(), max_wait=0)

    with pytest.raises(ZohoUnreachableTooLong) as stopped:
        client.list_customers()

    assert stopped.value.message.startswith(
        f"Zoho unreachable at 127.0.0.1:{zoho_link.port}: connection refused"
    )
    client.close()


def test_an_unknown_host_is_unreachable_too(emulator, settings):
    settings.ZOHO_API_BASE_URL = "http://zoho.invalid/billing/v1"
    client = ZohoClient(zoho_config(), max_wait=0)

    with pytest.raises(ZohoUnreachableTooLong, match="zoho.invalid: the name does not resolve"):
        client.list_customers()
    client.close()


def test_unreachable_is_never_a_request_zoho_may_have(emulator, zoho_link):
    zoho_link.cut()
    client = ZohoClient(zoho_config(), max_wait=0)

    with pytest.raises(ZohoUnreachable) as refused:
        client._request_once("POST", "/customers", json={"display_name": "X", "email": "x@y.za"})

    assert refused.value.request_sent is False
    client.close()
