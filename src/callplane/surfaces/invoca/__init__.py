"""The Invoca surfaces: Call Ingestion, transcripts, the Signal API and calls in progress."""
