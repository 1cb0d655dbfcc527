"""One customer's sync within a run: what to do with it, doing it, and the creates.

Owns: the decisions (`sync`: create, adopt, update, deactivate, reactivate, skip, invalid,
wait, gone; pure, as `zoho_plan` shows them), acting on them, finding the customer in Zoho
(`matching`), whose fault a refusal is (`refusals`) and our account number in Zoho's custom
field (`account_numbers`).

May import: models, database, customer_data, times, zoho, run (the package above: its claims, audit
and stops).
"""
