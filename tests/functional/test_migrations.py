"""The alembic migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""


def test_the_migrated_schema_is_the_models(db_url):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    import shared.db.models  # noqa: F401 - registers every table
    from shared.db.base import Base
    from shared.db.session import get_engine

    with get_engine(db_url).connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert differences == [], "a model changed without a migration (or the other way round)"


def test_every_migration_has_a_way_back(tmp_path):
    """Downgrade to nothing and up again: each step's downgrade undoes its upgrade."""
    from alembic import command

    from shared.db.migrate import alembic_config, current, upgrade

    url = f"sqlite:///{tmp_path / 'dm.sqlite3'}"
    upgrade(url)
    head = current(url)
    command.downgrade(alembic_config(url), "base")
    assert current(url) is None
    upgrade(url)
    assert current(url) == head
