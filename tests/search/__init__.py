"""Transcript search: the database-kept index, the query interface and GET /v1/calls?q=, on both databases."""
