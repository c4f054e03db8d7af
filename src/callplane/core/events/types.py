"""The types of the rows in the event outbox (`events.type`): one list, so producers and readers agree."""

from __future__ import annotations

CALL_RECEIVED = "call.received"  # a call was accepted (ingestion) or its processing started (a live call)
CALL_PROCESSED = "call.processed"  # post-call processing completed
CALL_PROCESSING_FAILED = "call.processing_failed"  # post-call processing gave up
CALL_RETRY_REQUESTED = "call.retry_requested"  # a failed call was queued again
CALL_SIGNALS_APPLIED = "call.signals_applied"  # signals or custom data were set through a signal API
