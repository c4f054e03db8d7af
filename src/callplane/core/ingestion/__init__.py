"""Call ingestion: validating and accepting finished calls (single and batch) durably before answering."""
