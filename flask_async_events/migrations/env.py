"""Alembic environment for flask-async-events: its own tables and version table only."""

from alembic import context

from flask_async_events.errors import NotSetUp
from flask_async_events.migrate import VERSION_TABLE
from flask_async_events.models import TABLE_PREFIX, Base


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    if type_ == "table":
        return bool(name) and name.startswith(TABLE_PREFIX) and name != VERSION_TABLE  # type: ignore[union-attr]
    return True


connection = context.config.attributes.get("connection")
if connection is None:
    raise NotSetUp("run migrations with `flask async-events db upgrade`, which supplies the connection")
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=VERSION_TABLE,
    include_name=include_name,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
