"""Services: every write the app makes, one module per job."""
