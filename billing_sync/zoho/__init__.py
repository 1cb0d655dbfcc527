"""The Zoho Billing client: configuration, OAuth, HTTP, errors, pacing and Zoho's answers.

Owns: the settings read for Zoho (`config`), the error family (`errors`), the token cache
(`auth`), the request gate and its budget (`pacing`), the shared state row (`state`), Zoho's
answers counted (`answers`), the retry policy (`retry`), parsed records (`records`) and the one
HTTP choke point (`client`).

May import: models, times.
"""
