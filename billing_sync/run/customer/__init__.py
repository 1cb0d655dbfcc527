"""One customer's sync within a run: what to do with it, doing it, and the creates.

Owns: the decisions (`decisions`: create, adopt, update, deactivate, reactivate, skip, invalid,
wait, gone; pure, as `zoho_plan` shows them), acting on them (`acting`: `CustomerSync`), the
creates (`creates`: intents written ahead, the create sent, Zoho's answers written a group at
a time), what an error means next (`errors`), finding the customer in Zoho (`matching`),
whose fault a refusal is and the refusals held until it is known (`refusals`) and our account
number in Zoho's custom field (`account_numbers`).

May import: models, database, customer_data, times, zoho, run (the package above: its claims, audit
and stops).
"""
