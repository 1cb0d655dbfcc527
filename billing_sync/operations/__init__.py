"""Operations: what keeps the tool running alone and shows its state to people.

Owns: alerts and their delivery (`alerts`, `notify`), /healthz (`health`) and /metrics
(`metrics`), the admin overview's figures and the status summary (`overview`), the django-q
schedules (`schedules`) and queue (`queueing`), the credentials check (`credentials`), and the
drift check against Zoho with its repair (`verify`).

May import: models, database, customer_data, times, zoho, run, imports.
"""
