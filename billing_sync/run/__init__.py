"""The run: customers taken to Zoho Billing, one run at a time, every attempt on record.

Owns: the run's entry points (`runs`: backfill, retry, sync, one customer, the admin's
selection), the customers it takes (`selection`), its hold on their rows (`claims`), their
SyncAttempt rows (`audit`), what stops it (`stops`), its record opened and closed (`records`)
and what it reports, read from those rows (`report`); the plan of a run not yet made (`plan`)
and when the work will be done (`estimate`). One customer's sync lives in `run.customer`.

May import: models, database, ctrl_c, customer_data, times, zoho, operations.alerts (a run ends by
telling the team what started or stopped going wrong), imports.source (a run ends by writing
the Zoho ids back into the company's database).

The words used here are explained in docs/glossary.md.
"""
