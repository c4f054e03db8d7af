"""Transactional core services over one internal call model; the caller owns the transaction."""
