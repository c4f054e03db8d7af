"""Apply Alembic migrations programmatically (``callplane migrate`` and on every start)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from callplane.settings import Settings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(settings: Settings) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", str(MIGRATIONS_DIR / "versions"))
    config.attributes["database_url"] = settings.resolved_database_url
    if settings.is_sqlite:
        settings.ensure_data_dir()
    return config


def upgrade(settings: Settings, revision: str = "head") -> None:
    command.upgrade(alembic_config(settings), revision)


def current_head() -> str | None:
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    return ScriptDirectory.from_config(config).get_current_head()
