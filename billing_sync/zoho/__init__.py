"""Zoho Billing client: configuration, OAuth, HTTP, errors and pacing."""
