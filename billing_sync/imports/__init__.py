"""The import: customers brought in from files, the admin's upload and the company's database.

Owns: the upsert by account number and its record, CustomerImport and ImportRefusal
(`customer_import`), columns and cells (`rows`), CSV and JSON Lines (`files`), the company's
database read and written back (`source`), the reads about those imports (`selectors`) and the
demo's customers (`demo`).

May import: models, database, ctrl_c, customer_data, operations.alerts (an import ends by
telling the team about refused rows or a source it could not read).
"""
