"""Accounts, API tokens (stored hashed) and the tenant scoping every API request goes through."""
