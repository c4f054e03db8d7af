"""Outgoing notifications: webhook endpoints and the delivery outbox."""
