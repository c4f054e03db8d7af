"""The durable job queue that post-call processing runs from (leases, retries, attempts)."""
