"""Moving the test database between migration states, for the tests of the migrations themselves.

The test database is shared by every test of the run, so a test that migrates it backwards must
leave it at the latest migrations again (`migrate_to_latest` in a `finally:`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.apps.registry import Apps
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test.utils import override_settings

# The last migrations of main before issue #13 moved the models to `audiences` and `stats`.
OLD_LAYOUT = [
    ("campaigns", "0009_link_check_results"),
    ("tracking", "0006_local_simulator_state"),
    ("reports", "0001_initial"),
]
# The apps the move created: they did not exist at the old layout.
NEW_APPS = ("audiences", "stats")


def applied_state() -> Apps:
    """The historical models of the migrations the database has applied right now."""
    # A new executor reads django_migrations afresh (a loader keeps what it read when built).
    loader = MigrationExecutor(connection).loader
    graph = loader.graph
    applied = {key for key in loader.applied_migrations if key in graph.nodes}
    leaves = [key for key in applied if not any(child.key in applied for child in graph.node_map[key].children)]
    return loader.project_state(leaves, at_end=True).apps


def migrate_to_old_layout() -> Apps:
    """Unapply the move (and whatever depends on it); return the old layout's historical models."""
    executor = MigrationExecutor(connection)
    executor.migrate([*OLD_LAYOUT, *((app, None) for app in NEW_APPS)])
    return applied_state()


def migrate_to_latest() -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    # The migrations change content types behind the manager's cache.
    ContentType.objects.clear_cache()


@contextmanager
def migrations_enabled() -> Iterator[None]:
    """Make the project's migrations visible, also under `pytest --nomigrations`.

    That option hides every migration (MIGRATION_MODULES) and builds the schema from the models, so
    django_migrations stays empty. The schema is then the latest migrations' own: show the
    migrations again and record them as applied without running them, so that a test can migrate
    backwards from there.
    """
    if "campaigns" in MigrationExecutor(connection).loader.migrated_apps:
        yield
        return
    with override_settings(MIGRATION_MODULES={}):
        executor = MigrationExecutor(connection)
        if not executor.loader.applied_migrations:
            executor.migrate(executor.loader.graph.leaf_nodes(), fake=True)
        yield


def table_rows(table: str, columns: list[str] | None = None) -> list[dict]:
    """Every row of a table as column → value, in id order, read with plain SQL (no model)."""
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {quote(table)} ORDER BY {quote('id')}")
        names = [column[0] for column in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    if columns is not None:
        rows = [{name: row[name] for name in columns} for row in rows]
    return rows


def table_columns(table: str) -> list[str]:
    with connection.cursor() as cursor:
        return [column.name for column in connection.introspection.get_table_description(cursor, table)]
