"""The run: customers taken to Zoho Billing, one run at a time, every attempt on record.

Owns: the run's entry points (`runs`: backfill, retry, sync, one customer, the admin's
selection), the run that sends (`live_run`), the customers it takes (`selection`), its hold on
their rows (`claims`), their SyncAttempt rows (`audit`), what stops it (`stops`), its record
opened and closed (`records`) and what it reports, read from those rows (`report`); the plan
of a run not yet made (`plan`) and when the work will be done (`estimate`). One customer's
sync lives in `run.customer`.

One customer's path, from `manage.py zoho_backfill_customers` to its SyncAttempt row:
1. `customers_backfill` (runs) says who needs Zoho; `_run` opens the run's record (records)
   and reads them a chunk at a time, oldest first (selection);
2. a `LiveRun` (live_run) claims them a group at a time (claims), writes the intents of its
   sure creates (customer.creates) and hands each to `CustomerSync.sync` (customer.acting);
3. that decides (customer.decisions `decide`, as `zoho_plan` shows) and acts: adopts, creates
   or updates it, its attempt (audit) on record "sending" before the first write to Zoho and
   finished once: its final attempt, written at once, or for a create with its group;
4. the customer is let go `synced`, `failed` or `needs_attention`; a run that must stop
   (stops) leaves what it had not finished `failed`, with the reason;
5. once its final attempt is on record the customer is reported from that row (`Reporter`),
   and the run's counts are read from those rows when its record is closed (report).

May import: models, database, ctrl_c, customer_data, times, zoho, operations.alerts (a run ends by
telling the team what started or stopped going wrong), imports.source (a run ends by writing
the Zoho ids back into the company's database).

The words used here are explained in docs/glossary.md.
"""
