"""The database layer: SQLAlchemy engine and sessions, the declarative base and Alembic migrations."""
