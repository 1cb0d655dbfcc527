"""Left to run by itself, it tells the team: each condition reaches the team's channel (here a
local HTTP sink standing for a webhook, through Apprise's json:// plugin) once when it starts
and once when it ends, typed warning or failure, then success; the backlog's end is a success
notice. A notice the service refuses is logged naming the service, never its URL, and sent at
the next check; none fails a run."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from billing_sync.models import AlertState
from billing_sync.operations.alerts import alerts_check
from tests.commands import run, run_json
from tests.helpers import NotificationSink
from tests.source_db import QUERY, source_alias, source_database

pytestmark = pytest.mark.django_db(transaction=True)  # notices go out once the state commits

REFUSED = "1 row of the company's database refused"
DONE = "Every customer that belongs in Zoho is in Zoho and in step"


@pytest.fixture
def sink(settings) -> Iterator[NotificationSink]:
    sink = NotificationSink()
    settings.ZOHO_ALERT_URLS = [sink.url]
    yield sink
    sink.close()


def test_refused_rows_and_the_backlog_reach_the_team_once_each(company, emulator, sink):
    company.execute(
        "UPDATE customers SET email = 'not-an-email' WHERE account_number = %s", ["CT-2025-00013"]
    )

    run_json("import_customers", "--source")
    assert sink.told() == [("warning", REFUSED)]

    run_json("zoho_sync_customers")  # the 12 others reach Zoho: the backlog is done
    (done,) = sink.received
    assert (done["type"], done["title"]) == ("success", DONE)
    assert "12 customers waited for a run at most" in done["message"]
    assert "it took 0 min" in done["message"]
    sink.told()

    run_json("import_customers", "--source")  # the same row refused again: not news
    run_json("zoho_sync_customers")
    assert sink.told() == []

    company.execute(
        "UPDATE customers SET email = 'fixed@example.co.za' WHERE account_number = %s",
        ["CT-2025-00013"],
    )
    run_json("import_customers", "--source")
    assert sink.told() == [("success", "No row of the company's database is refused any more")]
    run_json("zoho_sync_customers")
    assert sink.told() == [("success", DONE)]


def test_a_refusal_names_the_rows_and_links_the_list(company, emulator, sink):
    company.execute(
        "UPDATE customers SET email = 'not-an-email' WHERE account_number = %s", ["CT-2025-00013"]
    )

    document, _ = run_json("import_customers", "--source")

    (message,) = sink.received
    assert message["type"] == "warning"
    assert (
        "CT-2025-00013: email: 'not-an-email' is not a valid email address" in (message["message"])
    )
    assert (
        f"/admin/billing_sync/customerimport/{document['import_id']}/change/"
        in (message["message"])
    )


def test_an_import_that_cannot_read_the_source_is_a_failure_named_without_its_secret(
    emulator, settings, sink, tmp_path
):
    url = "postgres://billing_sync:s3cret-P4ss@127.0.0.1:1/circletel"  # nothing listens there
    settings.CUSTOMER_SOURCE_URL, settings.CUSTOMER_SOURCE_QUERY = url, QUERY
    with source_alias(url):
        document, code = run_json("import_customers", "--source")

    assert code == 2
    (message,) = sink.received
    assert (message["type"], message["title"]) == (
        "failure",
        "The import from the company's database failed",
    )
    assert "cannot reach the source database" in message["message"]
    assert "s3cret-P4ss" not in str(message) + str(document)
    sink.told()

    with source_database("sqlite", tmp_path) as company, source_alias(company.url):
        company.add_demo_customers()
        settings.CUSTOMER_SOURCE_URL = company.url
        run_json("import_customers", "--source")  # it reads again: the recovery

    assert ("success", "The import from the company's database works again") in sink.told()


def test_a_notice_the_service_refuses_is_sent_at_the_next_check_and_fails_nothing(
    emulator, make_customer, sink, caplog
):
    caplog.set_level(logging.WARNING, logger="billing_sync.alerts")
    make_customer(email="not-an-email")  # a customer that needs a person
    sink.refuse = 1

    document, code = run_json("zoho_backfill_customers")

    assert (code, document["counts"]["failed"]) == (1, 1)  # the run ended as it would anyway
    assert sink.received == []
    (failed,) = [r.getMessage() for r in caplog.records if "Could not deliver" in r.getMessage()]
    assert failed.endswith("to json; it is tried again at the next check")
    assert "T0K3N" not in caplog.text
    assert "127.0.0.1" not in failed
    assert len(AlertState.objects.get().undelivered) == 1

    alerts_check()  # the next check: nothing new, the kept notice goes out

    assert sink.told() == [("warning", "1 customer needs attention")]
    assert AlertState.objects.get().undelivered == []


def test_check_credentials_checks_each_url_naming_only_its_service(emulator, settings):
    settings.ZOHO_ALERT_URLS = [
        "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ",
        "nosuchservice://s3cret@example.com/",
    ]

    output, code = run("zoho_check_credentials")

    assert code == 2
    assert "ZOHO_ALERT_URLS #2 (nosuchservice) is not an Apprise URL it can use" in output
    assert "TIiajkdnlazkcOXrIdevi7FQ" not in output
    assert "s3cret" not in output

    settings.ZOHO_ALERT_URLS = settings.ZOHO_ALERT_URLS[:1]
    output, code = run("zoho_check_credentials")
    assert (code, "ZOHO_ALERT_URLS: 1 notification service(s) (slack)" in output) == (0, True)


def test_a_backlog_longer_than_a_run_says_when_it_will_be_done(emulator, settings, sink, tmp_path):
    settings.ZOHO_DAILY_LIMIT, settings.ZOHO_DAILY_RESERVE = 30, 10  # 20 requests a day
    path = tmp_path / "customers.csv"
    path.write_text(
        "account_number,email,first_name,last_name\n"
        + "".join(f"CT-LATE-{n:05d},late{n}@example.co.za,Late,{n}\n" for n in range(25)),
        encoding="utf-8",
    )

    run_json("import_customers", str(path))

    (message,) = sink.received
    assert message["type"] == "info"
    assert message["title"].startswith("25 customers to send to Zoho: done around ")
    assert "(bound by the daily share)" in message["message"]
