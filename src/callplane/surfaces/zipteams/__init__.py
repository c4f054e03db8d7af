"""The Zipteams Batch Call Ingestion API surface: up to 50 finished calls per request."""
